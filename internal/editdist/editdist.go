// Package editdist measures how far apart two strings are, for "did you mean" suggestions
// (a misspelt config key, a misspelt series in a dashboard).
package editdist

// Levenshtein is the number of single-byte insertions, deletions and substitutions that turn a
// into b. It takes time len(a)×len(b): callers bound what they pass in.
func Levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
