// Command custom-login is a runnable example of mcpgate's bring your own
// login: see README.md.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/mcpgate/mcpgate/examples/custom-login/app"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	mcpgate := flag.String("mcpgate-url", "http://127.0.0.1:8080", "mcpgate's public URL")
	keyFile := flag.String("private-key-file", "", "sign assertions with this PEM private key instead of sending CUSTOM_LOGIN_SECRET (mcpgate gets the public key: --custom-login-public-key-file)")
	flag.Parse()
	a := &app.App{MCPGateURL: *mcpgate, Users: app.DemoUsers}
	if *keyFile != "" {
		key, err := app.LoadPrivateKey(*keyFile)
		if err != nil {
			log.Fatal(err)
		}
		a.Key = key
	} else if a.Secret = os.Getenv("CUSTOM_LOGIN_SECRET"); len(a.Secret) < 32 {
		log.Fatal("set CUSTOM_LOGIN_SECRET to the same ≥32-byte secret as mcpgate's --custom-login-secret, or use -private-key-file")
	}
	log.Printf("example login app on http://%s/login (users: carol@acme.example / carol-password, dave@globex.example / dave-password)", *addr)
	srv := &http.Server{Addr: *addr, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
