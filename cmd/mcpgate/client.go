package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/internal/oauth"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store"
)

// clients builds the OAuth client registry over the core's store.
func (a *app) clients(c *server.Core) *oauth.Clients {
	return oauth.NewClients(c.DB, c.Audit, oauth.ClientsOptions{Logger: a.logger()})
}

func (a *app) clientCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "Manage OAuth clients (pre-registered, dynamically registered, metadata documents)"}
	var (
		name, scopes, grants, appType string
		redirects                     []string
		confidential                  bool
	)
	add := &cobra.Command{
		Use:   "add",
		Short: "Register an OAuth client; prints client_id=… (and client_secret=…, shown once) on stdout",
		Long: `Register an OAuth client with mcpgate's authorization server.

Standard output gets "client_id=<id>" and, for --confidential clients,
"client_secret=<secret>" (shown only this once: mcpgate keeps its SHA-256),
so the output can be read by a script or sourced by a shell. Details go to
standard error.

Redirect URIs must be https, loopback http (http://127.0.0.1, http://[::1]
or http://localhost; any port is accepted at authorization time) or a
private-use scheme of a native app (com.example.app:/cb, cursor://…).
A confidential client without redirect URIs is a service client: it gets
the client_credentials grant only, and needs --scopes (the token endpoint
refuses client_credentials for a client without a scope list). A client
with redirect URIs signs users in (authorization_code, refresh_token); it
gets client_credentials too only when --grant-types names it. Dynamic
registration (POST /register) never creates client_credentials clients.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openCore(cmd.Context(), server.OpenCreate)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			cl, secret, err := a.clients(c).CreateStatic(cmd.Context(), oauth.StaticClient{
				Name: name, RedirectURIs: redirects, Confidential: confidential,
				Scopes: splitList(scopes), GrantTypes: splitList(grants), ApplicationType: appType,
			})
			if err != nil {
				return clientInputErr(err)
			}
			fmt.Fprintf(a.stdout, "client_id=%s\n", cl.ClientID)
			kind := "public"
			if secret != "" {
				fmt.Fprintf(a.stdout, "client_secret=%s\n", secret)
				kind = "confidential"
			}
			fmt.Fprintf(a.stderr, "created %s client %s (%s): %s application, auth method %s, grant types [%s], redirect URIs [%s], scopes [%s].\n",
				kind, cl.ClientID, cl.Name, cl.ApplicationType, cl.TokenEndpointAuthMethod, strings.Join(cl.GrantTypes, " "),
				strings.Join(cl.RedirectURIs, " "), orAll(cl.Scopes))
			if secret != "" {
				fmt.Fprintln(a.stderr, "The client secret is shown only this once.")
			}
			if oauth.AllowsGrant(cl, oauth.GrantClientCredentials) && len(cl.Scopes) == 0 {
				fmt.Fprintln(a.stderr, "Warning: the client has no --scopes, so the client_credentials grant will refuse it (invalid_scope); register the client with --scopes for client_credentials.")
			}
			return nil
		},
	}
	add.Flags().StringVar(&name, "name", "", "name shown on the consent page (required)")
	add.Flags().StringArrayVar(&redirects, "redirect-uri", nil, "a redirect URI (repeat the flag for several)")
	add.Flags().BoolVar(&confidential, "confidential", false, "issue a client secret (client_secret_basic or client_secret_post)")
	add.Flags().StringVar(&scopes, "scopes", "", "comma- or space-separated scopes the client may ask for (default: any)")
	add.Flags().StringVar(&grants, "grant-types", "", "comma-separated grant types (default: authorization_code,refresh_token; client_credentials for a confidential client without redirect URIs)")
	add.Flags().StringVar(&appType, "application-type", "", "web or native (default: inferred from the redirect URIs)")
	add.MarkFlagRequired("name")

	var asJSON bool
	var kind string
	list := &cobra.Command{
		Use: "list", Short: "List OAuth clients (client_id first)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch kind {
			case "", store.ClientKindStatic, store.ClientKindDCR, store.ClientKindCIMD:
			default:
				return fmt.Errorf("--kind %q: must be static, dcr or cimd", kind)
			}
			c, err := a.openCore(cmd.Context(), server.OpenReadOnly)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			all, err := a.clients(c).List(cmd.Context(), kind)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				for _, cl := range all {
					enc.Encode(clientJSON(cl))
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT_ID\tKIND\tNAME\tTYPE\tAUTH\tREDIRECT_URIS\tLAST USED\tCREATED")
			for _, cl := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cl.ClientID, cl.Kind, orDash(cl.Name), cl.ApplicationType,
					cl.TokenEndpointAuthMethod, orDash(strings.Join(cl.RedirectURIs, ",")), fmtTime(cl.LastUsedAt, "never"), fmtTime(cl.CreatedAt, ""))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	list.Flags().StringVar(&kind, "kind", "", "only clients of this kind: static, dcr or cimd")

	remove := &cobra.Command{
		Use: "remove CLIENT_ID", Short: "Remove an OAuth client (its client_id stops working at once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openCore(cmd.Context(), server.OpenExisting)
			if err != nil {
				return err
			}
			defer c.Close(cmd.Context())
			cl, err := a.clients(c).Delete(cmd.Context(), args[0])
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no client %+q", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "removed %s client %s (%s)\n", cl.Kind, cl.ClientID, orDash(cl.Name))
			return nil
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// clientInputErr names the flag an oauth validation error is about.
func clientInputErr(err error) error {
	var ve *oauth.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	flag := map[string]string{
		"name": "--name", "redirect_uris": "--redirect-uri", "scopes": "--scopes",
		"grant_types": "--grant-types", "application_type": "--application-type",
	}[ve.Field]
	if flag == "" {
		flag = ve.Field
	}
	return fmt.Errorf("%s: %s", flag, ve.Message)
}

func clientJSON(cl store.OAuthClient) map[string]any {
	m := map[string]any{
		"client_id": cl.ClientID, "id": cl.ID, "kind": cl.Kind, "name": cl.Name, "confidential": !cl.Public(),
		"token_endpoint_auth_method": cl.TokenEndpointAuthMethod, "application_type": cl.ApplicationType,
		"redirect_uris": nonNil(cl.RedirectURIs), "grant_types": nonNil(cl.GrantTypes), "scopes": nonNil(cl.Scopes),
		"created_at": fmtTime(cl.CreatedAt, ""), "last_used_at": fmtTime(cl.LastUsedAt, ""),
	}
	if cl.Kind == store.ClientKindCIMD {
		m["metadata_url"] = cl.MetadataURL
		m["fetched_at"] = fmtTime(cl.FetchedAt, "")
		m["cache_until"] = fmtTime(cl.CacheUntil, "")
	}
	if cl.ClientURI != "" {
		m["client_uri"] = cl.ClientURI
	}
	return m
}

func orAll(scopes []string) string {
	if len(scopes) == 0 {
		return "any"
	}
	return strings.Join(scopes, " ")
}
