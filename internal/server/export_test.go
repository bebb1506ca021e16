package server

import "crypto/x509"

// AllowCIMDLoopbackForTests lets this package's tests serve client metadata
// documents from httptest TLS servers on loopback, trusting roots.
func AllowCIMDLoopbackForTests(roots *x509.CertPool) {
	cimdLoopbackForTests = true
	cimdRootsForTests = roots
}
