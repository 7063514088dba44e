// Command hacheck is a health-check proxy for HAProxy: it answers HAProxy's checks from the
// host's maintenance spool and a cached real check of the local service, and it is the operator
// CLI for that spool (package cli).
package main

import (
	"os"

	"github.com/hacheck/hacheck/cli"
)

func main() { os.Exit(cli.Main(os.Args)) }
