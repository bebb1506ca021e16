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
	flag.Parse()
	secret := os.Getenv("CUSTOM_LOGIN_SECRET")
	if len(secret) < 32 {
		log.Fatal("set CUSTOM_LOGIN_SECRET to the same ≥32-byte secret as mcpgate's --custom-login-secret")
	}
	a := &app.App{MCPGateURL: *mcpgate, Secret: secret, Users: app.DemoUsers}
	log.Printf("example login app on http://%s/login (users: carol@acme.example / carol-password, dave@globex.example / dave-password)", *addr)
	srv := &http.Server{Addr: *addr, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
