package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The process tests run the real binary, built once per test run.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error

	raceEnabled bool // set by race_test.go
)

// mcpgateBinary builds ./cmd/mcpgate once and returns its path.
func mcpgateBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the mcpgate binary")
	}
	binOnce.Do(func() {
		binDir, binError = os.MkdirTemp("", "mcpgate-bin-")
		if binError != nil {
			return
		}
		goTool := "go"
		if root := runtime.GOROOT(); root != "" {
			if p := filepath.Join(root, "bin", "go"); fileExists(p) {
				goTool = p
			}
		}
		binPath = filepath.Join(binDir, "mcpgate")
		args := []string{"build", "-buildvcs=false", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool, append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			binError = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// syncBuffer is a bytes.Buffer safe for the process's writer goroutine and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running `mcpgate serve`.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	base           string
	done           chan struct{} // closed when the process has exited
	waitErr        error
}

// processEnv is the environment of a child: the test's own, without any
// MCPGATE_* twin (TestMain removed them) and with extra added.
func processEnv(extra ...string) []string {
	return append(os.Environ(), extra...)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe starts `mcpgate serve --demo --addr <free port> dbFlags…` and
// waits until /healthz answers.
func startServe(t *testing.T, dbFlags ...string) *proc {
	t.Helper()
	bin := mcpgateBinary(t)
	addr := freeAddr(t)
	p := &proc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, base: "http://" + addr, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "--demo", "--addr", addr}, dbFlags...)...)
	p.cmd.Env = processEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})

	// Wait for /healthz: poll, bounded, and give up early if the process
	// exits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("mcpgate serve exited before becoming healthy: %v\nstdout:\n%s\nstderr:\n%s", p.waitErr, p.stdout, p.stderr)
		default:
		}
		resp, err := pollClient.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mcpgate serve not healthy after 10s (last error %v)\nstdout:\n%s\nstderr:\n%s", err, p.stdout, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pollClient gives up on a single health probe that hangs.
var pollClient = &http.Client{Timeout: 2 * time.Second}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop() int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("mcpgate serve did not exit after SIGTERM\nstderr:\n%s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// demoSecrets parses the start-up table: email → {password, key}.
func demoSecrets(stdout string) map[string][2]string {
	out := map[string][2]string{}
	for _, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.Contains(f[0], "@") {
			out[f[0]] = [2]string{f[1], f[2]}
		}
	}
	return out
}

// callBalance calls getAccountBalance over the stateless 2026-07-28
// protocol with raw HTTP, as the README's curl example does. It returns the
// HTTP status, the balance (when the call succeeded) and the body.
func callBalance(t *testing.T, base, key string) (status int, balance float64, body string) {
	t.Helper()
	const reqBody = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"getAccountBalance","arguments":{},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
		`"io.modelcontextprotocol/clientInfo":{"name":"cmd-test","version":"1"},` +
		`"io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, err := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(reqBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "getAccountBalance")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	body = b.String()
	data := body
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				data = d
				break
			}
		}
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, 0, body
	}
	var msg struct {
		Result struct {
			IsError           bool           `json:"isError"`
			StructuredContent map[string]any `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(data), &msg); err != nil {
		t.Fatalf("tools/call answer is not JSON-RPC: %v\n%s", err, body)
	}
	if msg.Result.IsError {
		t.Fatalf("getAccountBalance returned a tool error: %s", body)
	}
	bal, _ := msg.Result.StructuredContent["balance"].(float64)
	return resp.StatusCode, bal, body
}

var keyPattern = regexp.MustCompile(`^mcpg_[0-9A-Za-z]{49}$`)

func TestServeDemoLifecycle(t *testing.T) {
	dataDir := t.TempDir()
	demo := []string{"alice@example.com", "bob@example.com", "charlie@example.com"}

	// First start: the demo users are created and their secrets printed once.
	p := startServe(t, "--data-dir", dataDir)
	secrets := demoSecrets(p.stdout.String())
	for _, email := range demo {
		s, ok := secrets[email]
		if !ok {
			t.Fatalf("first start printed no secrets for %s:\n%s", email, p.stdout)
		}
		if len(s[0]) < 12 || strings.HasPrefix(s[0], "mcpg_") {
			t.Errorf("%s: password %q is not a generated password", email, s[0])
		}
		if !keyPattern.MatchString(s[1]) {
			t.Errorf("%s: key %q is not an mcpg_ key", email, s[1])
		}
	}
	if len(secrets) != 3 {
		t.Errorf("first start printed secrets for %d users, want 3:\n%s", len(secrets), p.stdout)
	}
	if strings.Contains(p.stderr.String(), "mcpg_") {
		t.Errorf("a key reached the log:\n%s", p.stderr)
	}
	aliceKey := secrets["alice@example.com"][1]

	status, bal, body := callBalance(t, p.base, aliceKey)
	if status != http.StatusOK || bal != 180 {
		t.Fatalf("alice's getAccountBalance: %d, balance %v, want 200 and 180\n%s", status, bal, body)
	}
	// A wrong key is refused with a challenge (and audited, checked below).
	wrong := "mcpg_" + strings.Repeat("0", 49)
	if status, _, body := callBalance(t, p.base, wrong); status != http.StatusUnauthorized {
		t.Errorf("unknown key: %d %s, want 401", status, body)
	}

	// Before the shutdown the key's use may not be written yet (it is
	// batched); after a SIGTERM it must be.
	if code := p.stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0\nstderr:\n%s", code, p.stderr)
	}
	c := cli{t: t, dataDir: dataDir}
	keys := c.keys("--user", "alice@example.com")
	if len(keys) != 1 || keys[0].LastUsedAt == "" || keys[0].Status != "active" {
		t.Errorf("alice's keys after shutdown = %+v, want one active key with last_used_at set (final flush)", keys)
	}
	if _, err := time.Parse(time.RFC3339, keys[0].LastUsedAt); len(keys) == 1 && err != nil {
		t.Errorf("last_used_at %q is not RFC 3339", keys[0].LastUsedAt)
	}
	denials := c.audit("--outcome", "deny", "--type", "auth.rejected")
	if len(denials) != 1 || denials[0].Reason == "" {
		t.Errorf("auth.rejected events after one bad key = %+v, want 1 with a reason", denials)
	}
	if out := c.ok("", "audit", "list").stdout; strings.Contains(out, aliceKey) || strings.Contains(out, wrong) {
		t.Error("the audit log contains a key")
	}

	// Restart on the same data: nothing secret is printed again, and the
	// old key still works.
	p = startServe(t, "--data-dir", dataDir)
	for name, out := range map[string]string{"stdout": p.stdout.String(), "stderr": p.stderr.String()} {
		if strings.Contains(out, "mcpg_") || strings.Contains(strings.ToUpper(out), "PASSWORD") {
			t.Errorf("restart printed a secret on %s:\n%s", name, out)
		}
	}
	if status, bal, body := callBalance(t, p.base, aliceKey); status != http.StatusOK || bal != 180 {
		t.Errorf("alice's key after restart: %d, balance %v\n%s", status, bal, body)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code after second SIGTERM = %d, want 0\nstderr:\n%s", code, p.stderr)
	}
	if n := len(c.users()); n != 3 {
		t.Errorf("%d users after a restart, want the same 3", n)
	}
}

func TestServeInvalidConfigListsEveryProblem(t *testing.T) {
	bin := mcpgateBinary(t)
	dataDir := t.TempDir()
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		wants []string
	}{
		{
			name:  "flags",
			args:  []string{"--public-url", "http://example.com", "--addr", "nonsense", "--max-body-bytes", "10"},
			wants: []string{"--public-url", "https", "--addr \"nonsense\"", "host:port", "--max-body-bytes 10"},
		},
		{
			name:  "environment",
			env:   []string{"MCPGATE_PUBLIC_URL=http://example.com", "MCPGATE_ADDR=nonsense"},
			wants: []string{"--public-url", "--addr \"nonsense\""},
		},
		{
			name:  "bad environment value named, with the other problems",
			args:  []string{"--addr", "nonsense"},
			env:   []string{"MCPGATE_KEY_CACHE_TTL=soon", "MCPGATE_MAX_BODY_BYTES=lots"},
			wants: []string{"MCPGATE_KEY_CACHE_TTL=\"soon\"", "MCPGATE_MAX_BODY_BYTES=\"lots\"", "--addr \"nonsense\""},
		},
		{
			name:  "missing data dir",
			args:  []string{"--data-dir", filepath.Join(dataDir, "missing"), "--log-level", "loud"},
			wants: []string{"--data-dir", "missing", "--log-level \"loud\""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			args := append([]string{"serve", "--data-dir", dataDir}, tc.args...)
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = processEnv(tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("mcpgate %s: %v, want a non-zero exit\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			for _, w := range tc.wants {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
		})
	}
	// Nothing was created in the data directory by a refused start.
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("a refused start left files behind: %v", entries)
	}
}

func TestBinaryVersionAndUsageErrors(t *testing.T) {
	bin := mcpgateBinary(t)
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !regexp.MustCompile(`^mcpgate \S+\n$`).Match(out) {
		t.Errorf("mcpgate version = %q, %v", out, err)
	}
	cmd := exec.Command(bin, "key", "create", "--user", "a@example.com", "--name", "x", "--expires", "tomorrow", "--data-dir", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || len(out) != 0 || !strings.HasPrefix(stderr.String(), "mcpgate: --expires \"tomorrow\"") {
		t.Errorf("bad --expires: exit %v, stdout %q, stderr %q; want exit 1, no stdout, an error naming the flag", err, out, stderr.String())
	}
}

// TestServePostgres runs the binary on PostgreSQL through --database-url.
func TestServePostgres(t *testing.T) {
	c := newPostgres(t)
	p := startServe(t, c.dbFlags()...)
	secrets := demoSecrets(p.stdout.String())
	if len(secrets) != 3 {
		t.Fatalf("first start on PostgreSQL printed secrets for %d users, want 3:\n%s", len(secrets), p.stdout)
	}
	key := secrets["bob@example.com"][1]
	if status, bal, body := callBalance(t, p.base, key); status != http.StatusOK || bal != -200 {
		t.Errorf("bob's getAccountBalance: %d, balance %v, want 200 and -200\n%s", status, bal, body)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d\nstderr:\n%s", code, p.stderr)
	}
	if keys := c.keys("--user", "bob@example.com"); len(keys) != 1 || keys[0].LastUsedAt == "" {
		t.Errorf("bob's keys after shutdown = %+v, want last_used_at set", keys)
	}
}
