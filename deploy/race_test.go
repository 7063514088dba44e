//go:build race

package deploy_test

// raceEnabled: the test binary is built with -race, so hacheck is too (its packages are then
// already compiled with -race, and a data race in the real binary fails the test).
const raceEnabled = true
