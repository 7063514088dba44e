package cli

import (
	"context"
	"fmt"
	"time"
)

type listCmd struct {
	serverFlags
	Threshold int    `default:"600" help:"Only services checked within this many seconds."`
	Timeout   string `default:"5s" help:"How long to wait for the server."`
	JSON      bool   `name:"json" help:"Print the server's answer as JSON."`
}

func (c *listCmd) Run(e *Env) error {
	timeout, err := time.ParseDuration(c.Timeout)
	if err != nil {
		return usageErrorf("--timeout %q: %v", c.Timeout, err)
	}
	client := newServerClient(c.Port)
	client.timeout = timeout
	recent, body, err := client.recent(context.Background(), c.Threshold)
	if err != nil {
		return err
	}
	if c.JSON {
		_, err := e.Stdout.Write(body)
		return err
	}
	for _, seen := range recent.SeenServices {
		fmt.Fprintf(e.Stdout, "%s\tcode=%d\tfrom=%s\t%s ago\n", seen.Service, seen.Code, seen.RemoteIP, roundDuration(e.Now().Sub(seen.Time)))
	}
	return nil
}
