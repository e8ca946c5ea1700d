// Package cli is the sphere command line: the security service (serve),
// the admin commands over the REST API, the device agent and tooling. Run
// is the whole program and is callable from tests in process.
//
// Built with -tags agentonly (the device binary, see docs/agent.md), it
// has only the agent and version commands and links neither the service
// (store, SQLite, PostgreSQL, Prometheus) nor the admin client's commands:
// commands_full.go and commands_agent.go each list what their build has.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/client"
)

// Version is the sphere version, set at build time with
// -ldflags "-X github.com/opensphere/sphere/cli.Version=v1.2.3".
var Version = "dev"

// app holds what every command shares: the streams and global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
	output         string // "table" or "json"
	tenant         string // --tenant override
}

// Run runs the sphere command line with args (without the program name).
// It returns the error that made the command fail, already explained to the
// user on stderr; ctx ending (SIGINT or SIGTERM in main) stops long-running
// commands such as serve gracefully.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
	}
	return err
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "sphere",
		Short:         "OpenSphere: end-to-end security for Linux IoT devices",
		Long:          long,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("--output must be table or json, not %q", a.output)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.configPath, "config", "", "CLI config file (default: $XDG_CONFIG_HOME/sphere/config.json or ~/.config/sphere/config.json; env SPHERE_CONFIG)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(a.commands()...)
	return root
}

// configFile returns where the CLI keeps its login.
func (a *app) configFile() (string, error) {
	if a.configPath != "" {
		return a.configPath, nil
	}
	if p := os.Getenv("SPHERE_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory (%v); pass --config FILE", err)
	}
	return filepath.Join(dir, "sphere", "config.json"), nil
}

// client returns an API client from the saved login.
func (a *app) client() (*client.Client, *Config, error) {
	path, err := a.configFile()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Server == "" || cfg.Token == "" {
		return nil, nil, errors.New("not logged in; run `sphere login --server URL --token TOKEN` first")
	}
	c, err := client.New(client.Config{Server: cfg.Server, Token: cfg.Token, CAFile: cfg.CAFile, Insecure: cfg.Insecure})
	return c, cfg, err
}

// tenantPath returns the API path of the selected (or --tenant) tenant.
func (a *app) tenantPath(cfg *Config) (string, error) {
	t := a.tenant
	if t == "" {
		t = cfg.Tenant
	}
	if t == "" {
		return "", errors.New("no tenant selected; run `sphere tenant select --tenant NAME` or pass --tenant")
	}
	return "/api/v1/tenants/" + url.PathEscape(t), nil
}

// tenantFlag adds --tenant to a command acting inside a tenant.
func (a *app) tenantFlag(cmd *cobra.Command) *cobra.Command {
	cmd.PersistentFlags().StringVar(&a.tenant, "tenant", "", "tenant name or id (default: the one chosen with sphere tenant select)")
	return cmd
}

// tenantCall runs fn with a client and the tenant's API path.
func (a *app) tenantCall(ctx context.Context, fn func(c *client.Client, tp string) error) error {
	c, cfg, err := a.client()
	if err != nil {
		return err
	}
	tp, err := a.tenantPath(cfg)
	if err != nil {
		return err
	}
	return fn(c, tp)
}

// requireFlags fails with a clear message when a required flag is missing.
func requireFlags(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		cmd.MarkFlagRequired(n)
	}
}
