// Command mcpgate runs the mcpgate server and administers its database.
// Subcommands only parse flags and call into internal packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
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
	envErr error // bad MCPGATE_* values, reported with the validation errors
}

// envAnnotation marks the flags that are configuration (storage, logging,
// serve) and therefore have an MCPGATE_* twin. Command arguments such as
// `key list --user` or `user add --password-stdin` have none: a stray
// MCPGATE_USER in the environment must not silently filter a listing.
const envAnnotation = "mcpgate/env"

func markConfigFlags(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		fs.SetAnnotation(f.Name, envAnnotation, []string{config.EnvName(f.Name)})
	})
}

// applyConfigEnv applies the environment twins of fs's configuration flags.
func applyConfigEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	twins := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[envAnnotation]; ok {
			twins[config.EnvName(f.Name)] = true
		}
	})
	return config.ApplyEnv(fs, func(name string) string {
		if !twins[name] {
			return ""
		}
		return getenv(name)
	})
}

// configError joins bad environment values with validate's complaints.
func (a *app) configError(validate func() error) error {
	if err := errors.Join(a.envErr, validate()); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return nil
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	a := &app{cfg: config.Defaults(), stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "mcpgate",
		Short:         "Authentication and authorization for MCP servers",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// Environment twins fill configuration flags not given on the
			// command line. A bad value is reported together with the
			// other configuration problems, so all are listed at once.
			a.envErr = applyConfigEnv(cmd.Flags(), os.Getenv)
			return nil
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	a.cfg.RegisterStorage(root.PersistentFlags())
	markConfigFlags(root.PersistentFlags())
	root.AddCommand(a.serveCmd(), a.migrateCmd(), a.userCmd(), a.keyCmd(), a.clientCmd(), a.auditCmd(), a.versionCmd())
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

// openCore validates the storage settings and opens the database as mode
// allows: commands that only read, or change what is there, never create a
// database, so one run in the wrong directory says so instead of showing
// an empty new one.
func (a *app) openCore(ctx context.Context, mode server.OpenMode) (*server.Core, error) {
	if err := a.configError(a.cfg.ValidateStorage); err != nil {
		return nil, err
	}
	c, err := server.OpenCoreMode(ctx, a.cfg, a.logger(), nil, mode)
	return c, a.storeError(err)
}

// storeError adds what to do to the errors of a missing or outdated
// database.
func (a *app) storeError(err error) error {
	db := sqlstore.RedactURL(a.cfg.DatabaseURLOrDefault())
	switch {
	case errors.Is(err, sqlstore.ErrNoDatabase):
		return fmt.Errorf(`%w (run "mcpgate serve" first, or pass --data-dir / --database-url)`, err)
	case errors.Is(err, sqlstore.ErrNoSchema):
		return fmt.Errorf(`database %s: %w (run "mcpgate migrate up" or "mcpgate serve" first, or check --database-url)`, db, err)
	case errors.Is(err, sqlstore.ErrSchemaBehind):
		return fmt.Errorf(`database %s: %w (run "mcpgate migrate up")`, db, err)
	}
	return err
}

func (a *app) serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the mcpgate server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.configError(a.cfg.Validate); err != nil {
				return err
			}
			log := a.logger()
			srv, err := server.New(cmd.Context(), a.cfg, log, a.stdout)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context(), nil)
		},
	}
	a.cfg.RegisterServe(cmd.Flags())
	markConfigFlags(cmd.Flags())
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
