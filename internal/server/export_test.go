package server

// AllowCIMDLoopbackForTests lets this package's tests serve client metadata
// documents from httptest servers on loopback.
func AllowCIMDLoopbackForTests() { cimdLoopbackForTests = true }
