// Command mcpgate runs the mcpgate server and administers its database.
// Subcommands only parse flags and call into internal packages.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mcpgate:", err)
		os.Exit(1)
	}
}

// app carries the configuration and streams shared by the subcommands.
type app struct {
	cfg    config.Config
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	a := &app{cfg: config.Defaults(), stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "mcpgate",
		Short:         "Authentication and authorization for MCP servers",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// Environment twins fill flags not given on the command line.
			if err := config.ApplyEnv(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			return nil
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	a.cfg.RegisterStorage(root.PersistentFlags())
	root.AddCommand(a.serveCmd(), a.migrateCmd(), a.userCmd(), a.keyCmd(), a.auditCmd(), a.versionCmd())
	return root
}

func (a *app) logger() *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(a.cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	format := a.cfg.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := a.stderr.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(a.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(a.stderr, opts))
}

// openCore validates the storage settings and opens the database.
func (a *app) openCore(ctx context.Context) (*server.Core, error) {
	if err := a.cfg.ValidateStorage(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return server.OpenCore(ctx, a.cfg, a.logger(), nil)
}

func (a *app) serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the mcpgate server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := a.logger()
			srv, err := server.New(cmd.Context(), a.cfg, log, a.stdout)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context(), nil)
		},
	}
	a.cfg.RegisterServe(cmd.Flags())
	return cmd
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(a.stdout, "mcpgate", server.VersionString())
			return nil
		},
	}
}
