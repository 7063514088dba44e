package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

type listCmd struct {
	serverFlags
	Threshold int    `default:"600" help:"Only services checked within this many seconds."`
	Timeout   string `default:"5s" help:"How long to wait for the server."`
	JSON      bool   `name:"json" help:"Print the server's answer as JSON."`
}

func (c *listCmd) Run(e *env) error {
	timeout, err := time.ParseDuration(c.Timeout)
	if err != nil {
		return usageErrorf("--timeout %q: %v", c.Timeout, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: "localhost:" + strconv.Itoa(c.Port), Path: "/recent", RawQuery: "threshold=" + strconv.Itoa(c.Threshold)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask the server at %s: %w", u.String(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ask the server at %s: %s", u.String(), resp.Status)
	}
	var recent struct {
		SeenServices [][2]json.RawMessage `json:"seen_services"`
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", u.String(), err)
	}
	if c.JSON {
		_, err := e.stdout.Write(body)
		return err
	}
	if err := json.Unmarshal(body, &recent); err != nil {
		return fmt.Errorf("decode %s: %w", u.String(), err)
	}
	for _, pair := range recent.SeenServices {
		var name string
		var seen struct {
			Code     int     `json:"code"`
			RemoteIP string  `json:"remote_ip"`
			TS       float64 `json:"ts"`
		}
		if json.Unmarshal(pair[0], &name) != nil || json.Unmarshal(pair[1], &seen) != nil {
			return fmt.Errorf("decode %s: unexpected entry %s", u.String(), pair[0])
		}
		ago := e.now().Sub(time.Unix(int64(seen.TS), 0))
		fmt.Fprintf(e.stdout, "%s\tcode=%d\tfrom=%s\t%s ago\n", name, seen.Code, seen.RemoteIP, roundDuration(ago))
	}
	return nil
}
