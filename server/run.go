package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/spool"
)

// shutdownGrace bounds how long running checks may finish after SIGTERM.
const shutdownGrace = 15 * time.Second

// RunOptions are the serve command's flags.
type RunOptions struct {
	ConfigPath  string // "" = embedded defaults
	SpoolRoot   string
	BindAddress string
	Ports       []int // none: the config's port
	Verbose     bool
	Version     string
	// Reload receives a value for every SIGHUP.
	Reload <-chan struct{}
	// Ready, if set, is called with the listeners once they are open (tests use it to learn
	// the ports of ":0" listeners).
	Ready func([]net.Listener)
}

// ConfigError is a configuration that cannot be used; the CLI exits 2 on it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Run serves until ctx is cancelled (SIGTERM), reloading the configuration on every value from
// opts.Reload. Startup problems (config, spool root access, ports) are returned before anything
// is served.
func Run(ctx context.Context, opts RunOptions, stderr io.Writer) error {
	cfg, warnings, err := config.Load(opts.ConfigPath)
	if err != nil {
		return &ConfigError{err}
	}
	logger, logCloser, err := NewLogger(string(cfg.LogPath), opts.Verbose)
	if err != nil {
		return &ConfigError{fmt.Errorf("config key log_path: %w", err)}
	}
	// A reload may replace logCloser: close whichever is in use when Run returns.
	defer func() { logCloser.Close() }()
	for _, w := range warnings {
		logger.Warn().Str("config", opts.ConfigPath).Msg(w)
	}
	if before, after, err := cfg.RlimitNofile.Apply(); err != nil {
		return &ConfigError{err}
	} else if before != after {
		logger.Info().Uint64("from", before).Uint64("to", after).Msg("raised the open files limit")
	}
	if limit, fromEnv := cfg.MemoryLimit.Apply(os.Getenv); fromEnv {
		logger.Info().Int64("bytes", limit).Msg("memory limit from GOMEMLIMIT; memory_limit is not applied")
	}
	// Sockets handed over by systemd (hacheck.socket) outlive this process, so checks queue in
	// the kernel instead of being refused while hacheck restarts. Taken before anything starts
	// running, so that a bad one is all a failed start reports.
	inherited, err := InheritedListeners()
	if err != nil {
		return err
	}
	defer closeAll(inherited) // Serve closes them too; this is for a failed start
	store := spool.New(opts.SpoolRoot)
	if err := store.EnsureRoot(); err != nil {
		return err
	}
	if err := store.Watch(); err != nil {
		logger.Warn().Err(err).Msg("spool changes are not watched; every check reads the mark files (slower, still correct)")
	} else {
		defer store.Close()
	}
	changes, err := store.WatchChanges()
	if err != nil {
		logger.Warn().Err(err).Msg("changes of the spool by other writers are not audited")
		changes = nil
	}
	srv := New(cfg, Options{Store: store, Changes: changes, Version: opts.Version, Logger: logger, Verbose: opts.Verbose})
	if changes != nil {
		followed := make(chan struct{})
		go func() {
			defer close(followed)
			srv.followChanges(ctx, changes)
		}()
		// Stopped and waited for however Run ends, a failed start included, so that nothing
		// is logged about it after Run returns and the log is closed.
		defer func() {
			changes.Close()
			<-followed
		}()
	}
	warnUnreadableMarks(store, logger)

	listeners := inherited
	ports := opts.Ports
	if len(ports) == 0 {
		ports = []int{int(cfg.Port)}
	}
	if listeners != nil {
		logger.Info().Msg("serving the sockets passed by socket activation; --port and --bind-address do not apply to them")
		warnPortNotInherited(logger, listeners, int(cfg.Port))
	} else if listeners, err = Listen(opts.BindAddress, ports); err != nil {
		return err
	}
	addrs := make([]string, len(listeners))
	for i, l := range listeners {
		addrs[i] = l.Addr().String()
	}
	agentDone := make(chan struct{})
	// Its own context: the agent stops with the HTTP side however that ends.
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	if cfg.AgentPort == 0 {
		close(agentDone)
	} else {
		agent, err := ListenAgent(opts.BindAddress, int(cfg.AgentPort))
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
		srv.agentPort = int(cfg.AgentPort)
		logger.Info().Str("listen", agent.Addr().String()).Msg("answering HAProxy agent checks")
		go func() {
			defer close(agentDone)
			srv.ServeAgent(agentCtx, agent)
		}()
	}
	logger.Info().Strs("listen", addrs).Str("spool_root", store.Root()).Str("version", opts.Version).
		Float64("cache_time_seconds", time.Duration(cfg.CacheTime).Seconds()).Float64("check_timeout_seconds", time.Duration(cfg.CheckTimeout).Seconds()).Msg("hacheck serving")
	if opts.Ready != nil {
		opts.Ready(listeners)
	}

	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-opts.Reload:
				if !ok {
					return
				}
				logCloser = srv.reload(opts, logCloser)
			}
		}
	}()
	err = srv.Serve(ctx, listeners, shutdownGrace)
	stopAgent()
	<-agentDone
	<-reloadDone
	srv.logger().Info().Msg("hacheck stopped")
	return err
}

// reload re-reads the configuration file and applies it; a bad file leaves the running
// configuration in place. The outcome is logged and exported. It returns the log closer in
// use afterwards.
func (s *Server) reload(opts RunOptions, logCloser io.Closer) io.Closer {
	now := time.Now()
	cfg, warnings, err := config.Load(opts.ConfigPath)
	if err != nil {
		s.metrics.ConfigReloaded(false, now)
		s.logger().Error().Err(err).Msg("config reload failed; keeping the running configuration")
		return logCloser
	}
	if _, _, err := cfg.RlimitNofile.Apply(); err != nil {
		s.metrics.ConfigReloaded(false, now)
		s.logger().Error().Err(err).Msg("config reload failed: rlimit_nofile; keeping the running configuration")
		return logCloser
	}
	cfg.MemoryLimit.Apply(os.Getenv)
	// A reopen-able log file is reopened on every SIGHUP, as logrotate's postrotate expects;
	// a changed log_path gets a new logger.
	if r, ok := logCloser.(interface{ Reopen() error }); ok {
		if err := r.Reopen(); err != nil {
			s.logger().Error().Err(err).Msg("reopen log file")
		}
	}
	if cfg.LogPath != s.cfg.Load().LogPath {
		logger, closer, err := NewLogger(string(cfg.LogPath), opts.Verbose)
		if err != nil {
			s.metrics.ConfigReloaded(false, now)
			s.logger().Error().Err(err).Msg("config reload failed: log_path; keeping the running configuration")
			return logCloser
		}
		s.SetLogger(logger)
		logCloser.Close()
		logCloser = closer
	}
	if cfg.AgentPort != config.Int(s.agentPort) {
		// Listeners are opened once, at startup; a port that changes would have to be swapped
		// under HAProxy's polls, for a setting that changes about never.
		s.logger().Warn().Int("agent_port", int(cfg.AgentPort)).Int("listening", s.agentPort).
			Msg("agent_port changed: it takes effect at the next restart")
	}
	s.Apply(cfg)
	for _, w := range warnings {
		s.logger().Warn().Str("config", opts.ConfigPath).Msg(w)
	}
	s.metrics.ConfigReloaded(true, now)
	s.logger().Info().Str("config", opts.ConfigPath).Float64("cache_time_seconds", time.Duration(cfg.CacheTime).Seconds()).Float64("check_timeout_seconds", time.Duration(cfg.CheckTimeout).Seconds()).Msg("config reloaded")
	return logCloser
}

// warnUnreadableMarks says at startup which marks count as down only because they cannot be
// read; afterwards /status and the metrics keep saying it.
func warnUnreadableMarks(store *spool.Store, logger zerolog.Logger) {
	marks, err := store.List()
	if err != nil {
		logger.Error().Err(err).Msg("cannot list the spool")
		return
	}
	for _, m := range marks {
		if m.Err != nil {
			logger.Warn().Str("mark", m.Name()).Err(m.Err).Msg("unreadable mark counts as down")
		}
	}
}

// warnPortNotInherited says when the config's port, which hadown, haup and halist read to find
// this server, is not among the sockets systemd passed: those commands would ask a port nobody
// serves.
func warnPortNotInherited(logger zerolog.Logger, listeners []net.Listener, port int) {
	for _, l := range listeners {
		if addr, ok := l.Addr().(*net.TCPAddr); ok && addr.Port == port {
			return
		}
	}
	logger.Warn().Int("port", port).Msg("config key port names a port none of the passed sockets listens on; hadown, haup and halist read it to find this server")
}

func closeAll(listeners []net.Listener) {
	for _, l := range listeners {
		l.Close()
	}
}
