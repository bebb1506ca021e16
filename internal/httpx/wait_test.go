package httpx

import "testing"

func TestWaitSeconds(t *testing.T) {
	for secs, want := range map[int64]string{1: "1 second", 2: "2 seconds", 30: "30 seconds", 0: "0 seconds"} {
		if got := WaitSeconds(secs); got != want {
			t.Errorf("WaitSeconds(%d) = %q, want %q", secs, got, want)
		}
	}
}
