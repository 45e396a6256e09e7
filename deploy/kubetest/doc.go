// Package kubetest checks the Kubernetes deployment files (deploy/k8s and deploy/helm/voting)
// without a cluster: it renders them with the kustomize API and the Helm SDK, decodes every
// object strictly into the Kubernetes API types, runs the Pod Security "restricted" evaluator
// on every pod template, computes the NetworkPolicy allow matrix and compares the two forms.
//
// It is its own module so that Helm, kustomize and the Kubernetes libraries stay out of the
// application's go.mod.
package kubetest
