package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hacheck/hacheck/spool"
	"github.com/hacheck/hacheck/spool/audit"
)

// weightCmd is `hacheck weight SERVICE NN%`: a weight-only mark, which the agent check answers
// as "ready NN%" (HAProxy then gives the server NN% of its configured weight) and which holds
// nothing down: HTTP health checks answer as without it. `haup` removes it.
type weightCmd struct {
	spoolFlags
	outFlags
	guardFlags
	serverFlags          // asked what the load balancers see, for the guard
	ServicePort   int    `short:"P" name:"service-port" default:"0" help:"Weight only this instance (port); 0 means the whole service."`
	Reason        string `short:"r" help:"Why; default: the user running the command."`
	JSON          bool   `name:"json" help:"Print the written mark as JSON."`
	NonhumansFile string `name:"nonhumans-file" default:"/etc/nonhumans" hidden:"" help:"Accounts that must give a --reason."`
	Service       string `arg:"" name:"service" help:"Service name."`
	Percent       string `arg:"" name:"percent" help:"Share of the configured weight, 0% to 256%."`
}

func (c *weightCmd) Run(e *Env) error {
	c.apply(e)
	if err := validateTargets([]string{c.Service}, c.ServicePort); err != nil {
		return err
	}
	if c.Service == spool.AllServices {
		return usageErrorf("a weight is set per service, not on %q", spool.AllServices)
	}
	weight, err := parsePercent(c.Percent)
	if err != nil {
		return err
	}
	reason := c.Reason
	if reason == "" {
		if reason, err = defaultReason(e, c.NonhumansFile); err != nil {
			return err
		}
	}
	mark := spool.Mark{Service: c.Service, Port: c.ServicePort, Reason: reason, Weight: &weight}
	guard := func(spool.Set) error { return nil }
	if c.guardFlags.on(e) {
		// A weight takes weight away as a down mark does (0% all of it): guarded alike.
		guard = guardCheck(e, lbFlags{serverFlags: c.serverFlags}, []spool.Mark{mark})
	}
	ms, err := c.store(e).PutAll([]spool.Mark{mark}, func(held spool.Set) error {
		// A weight replaces the mark of the same name; it must not quietly bring back a
		// service someone took down or is draining.
		if old, ok := held[mark.Key()]; ok && !old.WeightOnly() {
			return fmt.Errorf("%s is marked %s (%s); haup it first", mark.Key(), markKind(old), oneLine(old.Reason))
		}
		return guard(held)
	})
	if err != nil {
		return err
	}
	m := ms[0]
	logChange(e, audit.Change{Action: audit.ActionOf(m), Service: c.Service, Port: c.ServicePort, Reason: m.Reason, Weight: m.Weight, Force: c.Force})
	if c.JSON {
		return json.NewEncoder(e.Stdout).Encode(toMarkJSON(m, e.Now()))
	}
	return nil
}

// parsePercent reads "30%" or "30": a whole percentage from 0 to 256, what HAProxy's agent
// check accepts.
func parsePercent(text string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(text, "%"))
	if err != nil || n < 0 || n > spool.MaxWeight {
		return 0, usageErrorf("weight %q: must be a whole percentage from 0%% to %d%%", text, spool.MaxWeight)
	}
	return n, nil
}
