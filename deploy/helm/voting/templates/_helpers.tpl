{{/* Release-scoped base name of every object. */}}
{{- define "voting.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object besides name, instance and component (see voting.selectorLabels). */}}
{{- define "voting.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: voting
{{- end -}}

{{/* Labels of objects that belong to no one component: the standard app.kubernetes.io set. */}}
{{- define "voting.labels" -}}
{{ include "voting.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Selector labels of one of the app's components; call with (dict "ctx" $ "component" "vote").
The same labels as the kustomize base, plus the release.
*/}}
{{- define "voting.selectorLabels" -}}
app.kubernetes.io/name: voting
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The app image. */}}
{{- define "voting.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Name of the release's own Secret (datastore passwords, external URLs). */}}
{{- define "voting.secretName" -}}
{{ include "voting.fullname" . }}-credentials
{{- end -}}

{{/*
The Secret and key of an in-cluster datastore's password: its existingSecret, or the release's
credentials Secret. Call with (dict "root" $ "ds" "redis"|"postgres").
*/}}
{{- define "voting.passwordRef" -}}
{{- $ds := index .root.Values .ds -}}
{{- if $ds.existingSecret -}}
name: {{ $ds.existingSecret }}
key: {{ $ds.existingSecretKey }}
{{- else -}}
name: {{ include "voting.secretName" .root }}
key: {{ .ds }}-password
{{- end -}}
{{- end -}}

{{/*
The port the app reaches a datastore on, for the NetworkPolicies: the in-cluster one's, the
port in external.url (its default when the URL names none), or external.port (with host, and
with existingSecret, whose URL the chart cannot read: set external.port to its port). Call
with (dict "ds" .Values.redis "default" 6379).
*/}}
{{- define "voting.datastorePort" -}}
{{- if .ds.enabled -}}
{{ .default }}
{{- else if .ds.external.url -}}
{{ (regexFind ":[0-9]+$" (urlParse .ds.external.url).host | trimPrefix ":") | default .default }}
{{- else -}}
{{ .ds.external.port }}
{{- end -}}
{{- end -}}

{{/* Host name of Redis as the app reaches it. */}}
{{- define "voting.redisHost" -}}
{{- if .Values.redis.enabled -}}{{ include "voting.fullname" . }}-redis{{- else -}}{{ .Values.redis.external.host }}{{- end -}}
{{- end -}}

{{/* The CloudNativePG Cluster of postgres.cloudnativepg; its Secret <name>-app holds the URL. */}}
{{- define "voting.cnpgCluster" -}}
{{ include "voting.fullname" . }}-db
{{- end -}}

{{/* Whether the in-cluster PostgreSQL is a CloudNativePG Cluster. */}}
{{- define "voting.cnpg" -}}
{{- if and .Values.postgres.enabled .Values.postgres.cloudnativepg.enabled }}true{{ end -}}
{{- end -}}

{{/* Host name of PostgreSQL as the app reaches it. */}}
{{- define "voting.postgresHost" -}}
{{- if .Values.postgres.enabled -}}{{ include "voting.fullname" . }}-postgres{{- else -}}{{ .Values.postgres.external.host }}{{- end -}}
{{- end -}}

{{/*
Checks the datastore settings once, so that a wrong combination fails with a message instead
of rendering an app that cannot connect.
*/}}
{{- define "voting.validate" -}}
{{- range $name := list "redis" "postgres" -}}
{{- $ds := index $.Values $name -}}
{{- $modes := 0 -}}
{{- if $ds.external.url }}{{ $modes = add1 $modes }}{{ end -}}
{{- if $ds.external.existingSecret }}{{ $modes = add1 $modes }}{{ end -}}
{{- if $ds.external.host }}{{ $modes = add1 $modes }}{{ end -}}
{{- if and $ds.enabled (gt $modes 0) -}}
{{- fail (printf "%s.enabled is true, so %s.external.url, existingSecret and host must be empty" $name $name) -}}
{{- end -}}
{{- if and (not $ds.enabled) (ne $modes 1) -}}
{{- fail (printf "%s.enabled is false: set exactly one of %s.external.url, %s.external.existingSecret or %s.external.host" $name $name $name $name) -}}
{{- end -}}
{{- end -}}
{{- $pg := .Values.postgres -}}
{{- if and $pg.cloudnativepg.enabled (not $pg.enabled) -}}
{{- fail "postgres.cloudnativepg.enabled runs the in-cluster PostgreSQL as a CloudNativePG Cluster: set postgres.enabled=true too" -}}
{{- end -}}
{{- if and $pg.external.resultUrlKey (or $pg.enabled (not $pg.external.existingSecret)) -}}
{{- fail "postgres.external.resultUrlKey names a key of postgres.external.existingSecret: set it only with existingSecret (otherwise use postgres.external.resultUrl)" -}}
{{- end -}}
{{- if and $pg.external.resultUrl (not $pg.enabled) $pg.external.existingSecret -}}
{{- fail "postgres.external.existingSecret is set: put result's URL into that Secret and name its key in postgres.external.resultUrlKey instead of postgres.external.resultUrl" -}}
{{- end -}}
{{- end -}}

{{/*
Environment of a container that talks to Redis: VOTING_REDIS_URL from a Secret, or built from
host and a password Secret (Kubernetes expands $(REDIS_PASSWORD) in the value).
*/}}
{{- define "voting.redisEnv" -}}
{{- $ext := .Values.redis.external -}}
{{- if and (not .Values.redis.enabled) $ext.existingSecret }}
- name: VOTING_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ $ext.existingSecretKey }}
{{- else if and (not .Values.redis.enabled) $ext.url }}
- name: VOTING_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "voting.secretName" . }}
      key: redis-url
{{- else if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "voting.passwordRef" (dict "root" . "ds" "redis") | nindent 6 }}
- name: VOTING_REDIS_URL
  value: "redis://:$(REDIS_PASSWORD)@{{ include "voting.redisHost" . }}:6379/0"
{{- else if $ext.passwordSecret.name }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $ext.passwordSecret.name }}
      key: {{ $ext.passwordSecret.key }}
- name: VOTING_REDIS_URL
  value: "redis://:$(REDIS_PASSWORD)@{{ $ext.host }}:{{ $ext.port }}/{{ $ext.db }}"
{{- else }}
- name: VOTING_REDIS_URL
  value: "redis://{{ $ext.host }}:{{ $ext.port }}/{{ $ext.db }}"
{{- end }}
{{- end -}}

{{/* Environment of a container that talks to PostgreSQL; see voting.redisEnv. */}}
{{- define "voting.postgresEnv" -}}
{{- $ext := .Values.postgres.external -}}
{{- if include "voting.cnpg" . }}
- name: VOTING_POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "voting.cnpgCluster" . }}-app
      key: uri
{{- else if and (not .Values.postgres.enabled) $ext.existingSecret }}
- name: VOTING_POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ $ext.existingSecretKey }}
{{- else if and (not .Values.postgres.enabled) $ext.url }}
- name: VOTING_POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "voting.secretName" . }}
      key: postgres-url
{{- else if .Values.postgres.enabled }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "voting.passwordRef" (dict "root" . "ds" "postgres") | nindent 6 }}
- name: VOTING_POSTGRES_URL
  value: "postgres://{{ .Values.postgres.username }}:$(POSTGRES_PASSWORD)@{{ include "voting.postgresHost" . }}:5432/{{ .Values.postgres.database }}?sslmode=disable"
{{- else if $ext.passwordSecret.name }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $ext.passwordSecret.name }}
      key: {{ $ext.passwordSecret.key }}
- name: VOTING_POSTGRES_URL
  value: "postgres://{{ $ext.username }}:$(POSTGRES_PASSWORD)@{{ $ext.host }}:{{ $ext.port }}/{{ $ext.database }}?sslmode={{ $ext.sslmode }}"
{{- else }}
- name: VOTING_POSTGRES_URL
  value: "postgres://{{ $ext.username }}@{{ $ext.host }}:{{ $ext.port }}/{{ $ext.database }}?sslmode={{ $ext.sslmode }}"
{{- end }}
{{- end -}}

{{/*
Environment of the result container (not its migrate initContainer): the writer's URL unless
postgres.external.resultUrl (any mode but existingSecret) or resultUrlKey (existingSecret)
gives result its own, e.g. a read-only role's (docs/reliability.md).
*/}}
{{- define "voting.resultPostgresEnv" -}}
{{- $ext := .Values.postgres.external -}}
{{- if and (not .Values.postgres.enabled) $ext.existingSecret $ext.resultUrlKey }}
- name: VOTING_POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ $ext.resultUrlKey }}
{{- else if $ext.resultUrl }}
- name: VOTING_POSTGRES_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "voting.secretName" . }}
      key: result-postgres-url
{{- else }}
{{- include "voting.postgresEnv" . }}
{{- end }}
{{- end -}}

{{/* Pod annotations of the app: Prometheus scraping and a roll on config changes. */}}
{{- define "voting.podAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: "9090"
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}

{{/* The migrate initContainer; call with the root context. */}}
{{- define "voting.migrateContainer" -}}
- name: migrate
  image: {{ include "voting.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["migrate"]
  envFrom:
    - configMapRef:
        name: {{ include "voting.fullname" . }}-config
  env:
    {{- include "voting.postgresEnv" . | trim | nindent 4 }}
  resources:
    {{- toYaml .Values.migrate.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
{{- end -}}

{{/* Probes on the admin port, the same for vote, worker and result. */}}
{{- define "voting.probes" -}}
livenessProbe:
  httpGet:
    path: /livez
    port: admin
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/* Pod spec fields shared by vote, worker and result; call with (dict "ctx" $ "component" "vote"). */}}
{{- define "voting.podCommon" -}}
{{- $ := .ctx -}}
{{- $component := .component -}}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $.Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "voting.selectorLabels" (dict "ctx" $ "component" $component) | nindent 8 }}
    matchLabelKeys: ["pod-template-hash"]
  {{- end }}
{{- end }}
{{- end -}}
