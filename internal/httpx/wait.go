package httpx

import "strconv"

// WaitSeconds says a Retry-After delay in words for a page: "1 second",
// "30 seconds".
func WaitSeconds(secs int64) string {
	if secs == 1 {
		return "1 second"
	}
	return strconv.FormatInt(secs, 10) + " seconds"
}
