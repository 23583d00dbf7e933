package lever

// The system test of Lever OS 0.1 (reference §11.1) against a real leverd:
// TestMain's helpers start leverd on port 0 with a temporary data dir, build
// the Go test service (internal/basictestservice) and the hello-go example
// with `go build`, and deploy them with the real `lever` CLI.
//
// LEVER_BUILD_DIR (default <repo>/build/main) holds cli/leverd and cli/lever;
// liblever comes from pkg-config (PKG_CONFIG_PATH), like this package's.

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type system struct {
	buildDir string
	tmp      string
	addr     string
	leverd   *exec.Cmd
	exited   chan struct{}
	client   *Client

	mu   sync.Mutex
	logs []string
}

var (
	sysOnce sync.Once
	sys     *system
	sysErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sys != nil {
		if code != 0 {
			sys.mu.Lock()
			fmt.Fprintf(os.Stderr, "--- leverd log ---\n%s\n", strings.Join(sys.logs, "\n"))
			sys.mu.Unlock()
		}
		sys.stop()
	}
	os.Exit(code)
}

// getSystem starts leverd and deploys the services once for all tests.
func getSystem(t *testing.T) *system {
	t.Helper()
	if testing.Short() {
		t.Skip("system test (needs leverd) skipped in -short mode")
	}
	sysOnce.Do(func() { sys, sysErr = startSystem() })
	if sysErr != nil {
		t.Fatalf("system test set-up: %v", sysErr)
	}
	return sys
}

func run(timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func startSystem() (_ *system, err error) {
	wd, _ := os.Getwd()
	repo := filepath.Join(wd, "..", "..")
	s := &system{buildDir: os.Getenv("LEVER_BUILD_DIR")}
	if s.buildDir == "" {
		s.buildDir = filepath.Join(repo, "build", "main")
	}
	if s.buildDir, err = filepath.Abs(s.buildDir); err != nil {
		return nil, err
	}
	leverd := filepath.Join(s.buildDir, "cli", "leverd")
	for _, p := range []string{leverd, filepath.Join(s.buildDir, "cli", "lever")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%v: build leverd and lever first (LEVER_BUILD_DIR=%s)", err, s.buildDir)
		}
	}
	if s.tmp, err = os.MkdirTemp("", "lever-go-test-"); err != nil {
		return nil, err
	}
	// A root leverd's instances run as another user (docs/security.md): they
	// must reach the data dir in here.
	if err = os.Chmod(s.tmp, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()

	// The services run with a clean environment: link them with an rpath
	// to liblever's directory.
	libdir, err := run(30*time.Second, wd, os.Environ(), "pkg-config", "--variable=libdir", "lever")
	if err != nil {
		return nil, err
	}
	libdir, _ = filepath.Abs(strings.TrimSpace(libdir))
	env := append(os.Environ(), "CGO_LDFLAGS="+os.Getenv("CGO_LDFLAGS")+" -Wl,-rpath,"+libdir)
	services := []struct{ dir, pkgDir, leverJSON string }{
		{"basictestservice", wd, `{"name": "basictestservice", "entry": ["./serve"]}`},
		{"hello", filepath.Join(repo, "examples", "hello-go"), ""},
	}
	for _, svc := range services {
		dir := filepath.Join(s.tmp, svc.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		pkg := "."
		if svc.leverJSON != "" {
			pkg = "./internal/basictestservice"
			err = os.WriteFile(filepath.Join(dir, "lever.json"), []byte(svc.leverJSON), 0o644)
		} else {
			var b []byte
			if b, err = os.ReadFile(filepath.Join(svc.pkgDir, "lever.json")); err == nil {
				err = os.WriteFile(filepath.Join(dir, "lever.json"), b, 0o644)
			}
		}
		if err != nil {
			return nil, err
		}
		if _, err := run(120*time.Second, svc.pkgDir, env, "go", "build", "-buildvcs=false", "-o",
			filepath.Join(dir, "serve"), pkg); err != nil {
			return nil, err
		}
	}

	// leverd on port 0; its log tells the port.
	s.leverd = exec.Command(leverd, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(s.tmp, "data"),
		"--workers", "2", "--grace", "5s")
	s.leverd.Env = append(os.Environ(), "LEVER_DATA_DIR=")
	stderr, err := s.leverd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.leverd.Start(); err != nil {
		return nil, err
	}
	s.exited = make(chan struct{})
	listening := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listening on (\S+:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs = append(s.logs, line)
			s.mu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				select {
				case listening <- m[1]:
				default:
				}
			}
		}
		s.leverd.Wait()
		close(s.exited)
	}()
	select {
	case s.addr = <-listening:
	case <-s.exited:
		return nil, fmt.Errorf("leverd exited before listening")
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("leverd did not log \"listening on\" within 30 s")
	}
	for _, svc := range services {
		if _, err := s.lever(60*time.Second, "", "deploy", filepath.Join(s.tmp, svc.dir)); err != nil {
			return nil, err
		}
	}
	s.client = NewClient()
	s.client.ForceHost = s.addr
	return s, nil
}

// lever runs the lever CLI against this leverd.
func (s *system) lever(timeout time.Duration, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.buildDir, "cli", "lever"), append([]string{"-H", s.addr}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("lever %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (s *system) stop() {
	if s.client != nil {
		s.client.Close()
	}
	if s.leverd != nil && s.leverd.Process != nil && s.exited != nil {
		s.leverd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			s.leverd.Process.Kill()
			<-s.exited
		}
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// callCtx bounds a call, cold start included.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBasicHello(t *testing.T) {
	s := getSystem(t)
	var reply string
	if err := s.client.Service("dev.lever", "basictestservice").Invoke(callCtx(t), &reply, "BasicHello", "name"); err != nil {
		t.Fatal(err)
	}
	if reply != "hello name" {
		t.Fatalf("got %q", reply)
	}
	// The same through the CLI, and warm calls on the blocking path.
	out, err := s.lever(60*time.Second, "", "invoke", "/basictestservice/BasicHello", `"cli"`)
	if err != nil || out != "\"hello cli\"\n" {
		t.Fatalf("lever invoke: %q %v", out, err)
	}
	for i := 0; i < 20; i++ {
		if err := s.client.Service("dev.lever", "basictestservice").Invoke(context.Background(), &reply, "BasicHello", "warm"); err != nil || reply != "hello warm" {
			t.Fatalf("warm call: %q %v", reply, err)
		}
	}
}

func TestReqReplyStream(t *testing.T) {
	s := getSystem(t)
	stream, err := s.client.Service("dev.lever", "basictestservice").InvokeChan(callCtx(t), "ReqReplyStreamChan", "some test")
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"1", "2", "hello", "world", "test", "123"} {
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
		var reply string
		if err := stream.Receive(&reply); err != nil {
			t.Fatal(err)
		}
		if want := "some test:" + msg + " received"; reply != want {
			t.Fatalf("got %q, want %q", reply, want)
		}
	}
	if err := stream.Close(); err != nil {
		t.Fatal(err)
	}
	var reply string
	if err := stream.Receive(&reply); err != io.EOF {
		t.Fatalf("after Close: %q %v, want io.EOF", reply, err)
	}
}

func TestBasicError(t *testing.T) {
	s := getSystem(t)
	svc := s.client.Service("dev.lever", "basictestservice")
	var x any
	err := svc.Invoke(callCtx(t), &x, "BasicError", "some test")
	var re *RemoteError
	if !errors.As(err, &re) || err.Error() != "error sent: some test" {
		t.Fatalf("got %#v", err)
	}
	err = svc.Invoke(callCtx(t), nil, "ByteError")
	var rbe *RemoteByteError
	if !errors.As(err, &rbe) || string(rbe.Err) != "\x00\x01\xfe" {
		t.Fatalf("ByteError: %#v", err)
	}
	// Platform errors: an unknown service and an unknown method.
	var pe *Error
	if err := s.client.Service("dev.lever", "nosuchservice").Invoke(callCtx(t), nil, "X"); !errors.As(err, &pe) || pe.Code != NotFound {
		t.Fatalf("unknown service: %#v", err)
	}
	if err := svc.Invoke(callCtx(t), nil, "NoSuchMethod"); !errors.As(err, &pe) {
		t.Fatalf("unknown method: %#v", err)
	}
}

func TestInstanceEnvAndResources(t *testing.T) {
	s := getSystem(t)
	var info map[string]string
	if err := s.client.Resource("dev.lever", "basictestservice", "res7").Invoke(callCtx(t), &info, "Info"); err != nil {
		t.Fatal(err)
	}
	if info["env"] != "dev.lever" || info["service"] != "basictestservice" || info["instance"] == "" ||
		info["resource"] != "res7" || info["method"] != "Info" {
		t.Fatalf("Info: %v", info)
	}
}

func TestHelloGoExample(t *testing.T) {
	s := getSystem(t)
	var reply string
	if err := s.client.Service("dev.lever", "helloService").Invoke(callCtx(t), &reply, "SayHello", "world"); err != nil || reply != "Hello, world!" {
		t.Fatalf("SayHello: %q %v", reply, err)
	}
	// One service calling another through its gateway socket.
	if err := s.client.Service("dev.lever", "basictestservice").Invoke(callCtx(t), &reply, "CallHello", "helloService", "inside"); err != nil || reply != "Hello, inside!" {
		t.Fatalf("CallHello: %q %v", reply, err)
	}
}

// neededGRPC returns the DT_NEEDED entries of the ELF file at path that are
// gRPC, abseil, protobuf or their dependencies, or liblever.so itself.
func neededGRPC(t *testing.T, path string) (needed, bad []string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if needed, err = f.ImportedLibraries(); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^lib(grpc|gpr|absl|protobuf|upb|re2|cares|address_sorting|lever)`)
	for _, lib := range needed {
		if re.MatchString(lib) {
			bad = append(bad, lib)
		}
	}
	return needed, bad
}

// TestHelloGoStatic builds examples/hello-go with -tags lever_static
// (liblever.a and gRPC's archives through lever-static.pc, installed beside
// lever.pc), checks that the binary needs no gRPC shared library, deploys it
// to leverd and calls it. The binary is kept in LEVER_BUILD_DIR/go-static, so
// a second run with nothing changed does not link it again (go build skips an
// -o target whose build ID is current).
func TestHelloGoStatic(t *testing.T) {
	s := getSystem(t)
	wd, _ := os.Getwd()
	repo := filepath.Join(wd, "..", "..")
	// The default build, for comparison: it does need liblever.so.
	if needed, bad := neededGRPC(t, filepath.Join(s.tmp, "hello", "serve")); len(bad) == 0 {
		t.Fatalf("the shared hello-go needs %v: no liblever.so, so the check below proves nothing", needed)
	}
	bin := filepath.Join(s.buildDir, "go-static", "hello-go", "serve")
	if _, err := run(300*time.Second, filepath.Join(repo, "examples", "hello-go"), os.Environ(),
		"go", "build", "-buildvcs=false", "-tags", "lever_static", "-o", bin, "."); err != nil {
		t.Fatal(err)
	}
	if needed, bad := neededGRPC(t, bin); len(bad) != 0 {
		t.Fatalf("-tags lever_static: the binary still needs %v (all: %v)", bad, needed)
	}

	dir := filepath.Join(s.tmp, "hellostatic")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "serve"), b, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "lever.json"), []byte(`{"name": "helloStatic", "entry": ["./serve"]}`), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.lever(60*time.Second, "", "deploy", dir); err != nil {
		t.Fatal(err)
	}
	var reply string
	if err := s.client.Service("dev.lever", "helloStatic").Invoke(callCtx(t), &reply, "SayHello", "static"); err != nil || reply != "Hello, static!" {
		t.Fatalf("SayHello: %q %v", reply, err)
	}
	// Called from another service, through its gateway socket.
	if err := s.client.Service("dev.lever", "basictestservice").Invoke(callCtx(t), &reply, "CallHello", "helloStatic", "inside"); err != nil || reply != "Hello, inside!" {
		t.Fatalf("CallHello: %q %v", reply, err)
	}
}
