package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/hacheck/hacheck/config"
)

// serverFlags find the running server. Its port is named once for every command: -p, else
// $HACHECK_PORT, else the port key of the server's config file, else 3333. The config file
// comes first among the defaults a deployment sets (it survives sudo, which drops the
// environment), the variable is for hosts that run hacheck without one.
type serverFlags struct {
	Port       int    `short:"p" env:"HACHECK_PORT" placeholder:"PORT" help:"Port of the running hacheck server; default: the environment, else the port in --config-file, else 3333."`
	ConfigFile string `name:"config-file" default:"/etc/hacheck/config.yml" help:"The server's config file, read for its port only (missing or unreadable: 3333)."`
}

// AfterApply resolves Port once flags and environment are read (kong calls it for every
// command embedding serverFlags).
func (f *serverFlags) AfterApply(e *Env) error {
	if f.Port != 0 {
		if f.Port < 1 || f.Port > 65535 {
			return usageErrorf("--port %d: must be 1-65535", f.Port)
		}
		return nil
	}
	f.Port = configPort(e, f.ConfigFile)
	return nil
}

// configPort is the port the config file names, or config.DefaultPort. A config file that is
// absent or cannot be read (the server's, perhaps mode 0640) is no reason to refuse a spool
// change: the default stands, said with -v (flags are still being read here, so it is noted
// for later).
func configPort(e *Env, path string) int {
	if path == "" {
		return config.DefaultPort
	}
	cfg, _, err := config.Load(path)
	switch {
	case err == nil:
		return int(cfg.Port)
	case errors.Is(err, os.ErrNotExist):
	default:
		e.notes = append(e.notes, fmt.Sprintf("warning: server port %d assumed: %v", config.DefaultPort, oneLine(err.Error())))
	}
	return config.DefaultPort
}
