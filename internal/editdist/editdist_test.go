package editdist

import "testing"

func TestLevenshtein(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"cache_time", "cache_time", 0},
		{"cache_tme", "cache_time", 1},   // insertion
		{"cache_timee", "cache_time", 1}, // deletion
		{"cache_tine", "cache_time", 1},  // substitution
		{"chace_time", "cache_time", 2},  // a swap is two edits
		{"kitten", "sitting", 3},
		{"hacheck_requests_totl", "hacheck_requests_total", 1},
	}
	for _, tt := range tests {
		if got := Levenshtein(tt.a, tt.b); got != tt.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Levenshtein(tt.b, tt.a); got != tt.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d (symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}
