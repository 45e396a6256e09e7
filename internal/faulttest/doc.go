// Package faulttest holds the fault tests of the whole system: they build the voting binary,
// run vote, worker, result and migrate as separate processes against Redis and PostgreSQL
// servers of their own, inject a fault mid-load (a process killed or stopped, a server
// restarted or killed), and compare the store with what the load generator was told.
//
// The package has no code outside its tests. It never touches the servers named by
// VOTING_TEST_REDIS_URL and VOTING_TEST_POSTGRES_URL, since it stops and kills the servers it
// uses, and it only ever signals processes it started.
package faulttest
