module github.com/votingapp/voting/deploy/monitoring

go 1.26.8
