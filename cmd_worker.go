package caddysnake

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddysnake/caddysnake/internal/worker"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// workerFd is the worker's end of the socket pair Caddy made for it
// (cmd.ExtraFiles[0]).
const workerFd = 3

// The hidden `caddy python-worker` subcommand: a worker process Caddy
// starts from its own binary for an app with `processes N`. It loads the
// app its environment describes and serves the requests Caddy sends over
// fd 3; Caddy's own config is never loaded here.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "python-worker",
		Short: "Serves a Python app for Caddy as a worker process (started by Caddy itself)",
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Hidden = true
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdPythonWorker)
		},
	})
}

func cmdPythonWorker(caddycmd.Flags) (int, error) {
	// Named as the handler's logger is, so the app's lines read the same
	// as in process; Caddy's log settings do not reach here (stderr only).
	logger := caddy.Log().Named("http.handlers.python").With(zap.Int("worker_pid", os.Getpid()))
	cfg, err := worker.DecodeConfig(os.Getenv(worker.ConfigEnv))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	// Read once: neither the app nor the processes it starts need it.
	_ = os.Unsetenv(worker.ConfigEnv)
	f := os.NewFile(workerFd, "caddy-socket")
	conn, err := net.FileConn(f)
	_ = f.Close() // FileConn holds a dup
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("python worker: fd %d is not Caddy's socket: %w", workerFd, err)
	}
	ignoreStopSignals(logger)
	defer startWorkerProfile(logger)()
	code := worker.Run(conn, cfg, logger)
	_ = logger.Sync()
	if code == worker.ExitLoadFailed {
		return code, nil // Caddy logs the load error (a status over 1 exits quietly)
	}
	if code != 0 {
		return code, fmt.Errorf("python worker: exiting with status %d", code)
	}
	return 0, nil
}

// ignoreStopSignals keeps the worker up on the stop signals sent to all of
// Caddy's process group (Ctrl-C in a terminal) or cgroup (systemd's
// default KillMode): Caddy drains its workers itself (FrameShutdown), and
// a worker dying at once would fail the requests that drain waits for.
// Caught rather than ignored: the processes the app starts still get the
// default dispositions (SIG_IGN would carry over exec).
func ignoreStopSignals(logger *zap.Logger) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for sig := range sigs {
			logger.Debug("python worker: stop signal left to Caddy, which drains this worker", zap.Stringer("signal", sig))
		}
	}()
}

// workerProfileEnv names a file prefix: a worker writes its Go CPU profile
// to <prefix>.<pid> until it exits (bench/README.md, the hop's cost).
const workerProfileEnv = "CADDYSNAKE_WORKER_CPUPROFILE"

// startWorkerProfile starts the CPU profile the environment asks for; the
// function returned stops it.
func startWorkerProfile(logger *zap.Logger) func() {
	prefix := os.Getenv(workerProfileEnv)
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", prefix, os.Getpid()))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		logger.Warn("python worker: no CPU profile", zap.Error(err))
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
