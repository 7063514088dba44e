// Command bare is the load harness's yardstick: a net/http server that answers 200 to
// everything, as cheap as a Go HTTP server gets.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bare ADDR")
		os.Exit(2)
	}
	err := http.ListenAndServe(os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
