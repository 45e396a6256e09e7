// Command voting runs the voting app: the vote, worker and result services, alone or all in
// one process, and the tools around them. `voting -h` lists the subcommands.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// go-redis logs through its own global logger; its messages go to the structured log
	// at debug level, which the default handler (info) leaves out.
	quietRedis(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
