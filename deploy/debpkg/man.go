package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// manPage is hacheck(1): a short description around the binary's own --help for the program
// and each command, so the page says what --help says.
func manPage(bin, version string, when time.Time) ([]byte, error) {
	top, err := helpText(bin)
	if err != nil {
		return nil, err
	}
	commands := commandNames(top)
	if len(commands) == 0 {
		return nil, errNoCommands
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, ".TH HACHECK 1 %q %q \"User Commands\"\n", when.Format("2006-01-02"), "hacheck "+version)
	b.WriteString(`.SH NAME
hacheck, haup, hadown, hastatus, halist, hashowdowned \- health\-check proxy for HAProxy and its maintenance spool commands
.SH SYNOPSIS
.B hacheck
.RI [ command ]
.RI [ flags ]
.br
.B haup
|
.B hadown
|
.B hastatus
|
.B halist
|
.B hashowdowned
.RI [ flags ]
.RI [ service ...]
.SH DESCRIPTION
.B hacheck serve
answers HAProxy's health checks for the services of this host on port 3333, from the
maintenance marks in the spool directory and from a cached real check of the local service.
The other commands are the operator's tools for the spool.
Installed under the names
.BR haup ", " hadown ", " hastatus ", " halist " and " hashowdowned
the binary behaves as the matching command
.RB ( up ", " down ", " status ", " list ", " downed ).
.PP
What follows is the output of
.B hacheck \-\-help
and of
.B hacheck
.I command
.BR \-\-help .
`)
	section := func(title, text string) {
		fmt.Fprintf(&b, ".SS %q\n.nf\n", title)
		for line := range strings.SplitSeq(strings.TrimRight(text, "\n"), "\n") {
			b.WriteString(roffLine(line))
			b.WriteByte('\n')
		}
		b.WriteString(".fi\n")
	}
	b.WriteString(".SH COMMANDS\n")
	section("hacheck", top)
	for _, c := range commands {
		text, err := helpText(bin, c)
		if err != nil {
			return nil, err
		}
		section("hacheck "+c, text)
	}
	b.WriteString(`.SH FILES
.TP
.I /etc/hacheck/config.yml
The configuration of the service; every key is shown there with its default.
Its
.B port
also tells
.BR hadown ", " haup " and " halist
where the server listens
.RB ( HACHECK_PORT " and " \-p " come first)."
Check it with
.BR "hacheck serve \-\-check\-config \-c /etc/hacheck/config.yml" .
.TP
.I /var/spool/hacheck
The maintenance marks written by
.B hadown
and removed by
.BR haup .
.TP
.I /usr/share/hacheck
The Prometheus alert rules and the Grafana dashboard.
.TP
.I /dev/log
The system log, where
.BR hadown ", " haup " and " "hacheck weight"
record each change with the real uid and
.BR SUDO_USER ,
under the identifier
.BR hacheck
(a record the system log does not take within 2 seconds is dropped, the change made);
on success they print nothing unless asked
.RB ( \-v ", " \-\-json ).
.SH EXIT STATUS
0 on success; 1 when
.B hastatus
finds a service down, or on a failure at run time; 2 on bad flags or names, an unusable
configuration or a spool the user cannot access; 3 when
.B \-\-wait
runs out of time; 4 when the disruption guard refuses (by default only at a terminal; a script
asks for it with
.BR \-\-guard ).
.SH SEE ALSO
.BR systemctl (1),
.IR /usr/share/doc/hacheck/examples/haproxy.cfg
`)
	return b.Bytes(), nil
}

// helpText runs `hacheck [command] --help`.
func helpText(bin string, command ...string) (string, error) {
	cmd := exec.Command(bin, append(command, "--help")...)
	// kong wraps help to the terminal; without one it uses 80 columns, made explicit here.
	cmd.Env = append(os.Environ(), "COLUMNS=80")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s --help: %w", bin, strings.Join(command, " "), err)
	}
	return string(out), nil
}

// commandNames reads the commands listed under "Commands:" in the top-level help.
func commandNames(help string) []string {
	var names []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Commands:":
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   "):
			names = append(names, strings.Fields(line)[0])
		}
	}
	return names
}

// roffLine makes a line of text print literally in a no-fill block.
func roffLine(line string) string {
	line = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(line)
	if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
		line = `\&` + line
	}
	return line
}
