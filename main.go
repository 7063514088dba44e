// Command hacheck is a health-check proxy for HAProxy: it answers HAProxy's checks from the
// host's maintenance spool and a cached real check of the local service, and it is the operator
// CLI for that spool. Everything it does is in package cli; this hands it the process.
package main

import (
	"os"
	"time"

	"github.com/hacheck/hacheck/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, cli.Env{
		Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Now: time.Now,
		Interactive: cli.AtTerminal(), SysLog: cli.SystemLog(),
	}))
}
