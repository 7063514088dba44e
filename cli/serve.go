package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/server"
)

type serveCmd struct {
	spoolFlags
	ConfigFile  string `short:"c" name:"config-file" help:"YAML configuration file; without one the embedded defaults apply."`
	Port        []int  `short:"p" env:"HACHECK_PORT" placeholder:"PORT" help:"Port to listen on (repeatable); default: the environment, else the config file's port, else 3333."`
	BindAddress string `short:"B" name:"bind-address" default:"" help:"Address to listen on; default all addresses, IPv4 and IPv6."`
	Verbose     bool   `short:"v" help:"Log one line per request."`
	CheckConfig bool   `name:"check-config" help:"Validate the configuration file and exit."`
}

func (c *serveCmd) Run(e *Env) error {
	for _, p := range c.Port {
		if p < 0 || p > 65535 {
			return usageErrorf("--port %d: must be 0-65535", p)
		}
	}
	if c.CheckConfig {
		cfg, warnings, err := config.Load(c.ConfigFile)
		if err != nil {
			return &server.ConfigError{Err: err}
		}
		// What serve checks against the machine beyond the file itself.
		if err := cfg.RlimitNofile.Check(); err != nil {
			return &server.ConfigError{Err: err}
		}
		for _, w := range warnings {
			fmt.Fprintf(e.Stderr, "warning: %s\n", w)
		}
		name := c.ConfigFile
		if name == "" {
			name = "embedded defaults"
		}
		fmt.Fprintf(e.Stdout, "%s: OK\n", name)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return server.Run(ctx, server.RunOptions{
		ConfigPath:  c.ConfigFile,
		SpoolRoot:   c.SpoolRoot,
		BindAddress: c.BindAddress,
		Ports:       c.Port,
		Verbose:     c.Verbose,
		Version:     buildVersion(),
		Reload:      reload,
	}, e.Stderr)
}
