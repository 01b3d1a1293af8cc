package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil/hosttools"
)

const sshdInstalled = "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u3\n\n"

func TestSSHDEffectiveSettings(t *testing.T) {
	root := tree(t, map[string]string{
		"/var/lib/dpkg/status":             sshdInstalled,
		"/etc/ssh/sshd_config":             "# comment\nPermitRootLogin=yes\nInclude sshd_config.d/*.conf\nMaxAuthTries 3 # trailing comment\nmaxauthtries 9\nClientAliveInterval 5m\nLoginGraceTime 1m30s\nMatch User bob\n  PermitEmptyPasswords yes\n  X11Forwarding yes\n",
		"/etc/ssh/sshd_config.d/10-a.conf": "X11Forwarding no\nPermitRootLogin no\nMatch Address 10.0.0.0/8\n  MaxSessions 1\n",
		"/etc/ssh/sshd_config.d/20-b.conf": "MaxSessions 4\nLogLevel verbose\nCiphers -*-cbc,aes128-ctr\n",
	})
	env := treeEnv(root)
	tests := []struct {
		setting string
		state   State
		ev      string
	}{
		// First value wins: PermitRootLogin yes comes before the Include.
		{`{"keyword":"PermitRootLogin","equals":"no"}`, NonCompliant, "PermitRootLogin yes (/etc/ssh/sshd_config line 2), want no"},
		{`{"keyword":"MaxAuthTries","max":4}`, Compliant, "MaxAuthTries 3 (/etc/ssh/sshd_config line 4)"},
		// A Match block ends at the end of its file; 20-b.conf is global again.
		{`{"keyword":"MaxSessions","max":4}`, Compliant, "MaxSessions 4 (/etc/ssh/sshd_config.d/20-b.conf line 1)"},
		{`{"keyword":"X11Forwarding","equals":"no"}`, Compliant, "X11Forwarding no (/etc/ssh/sshd_config.d/10-a.conf line 1)"},
		// Inside Match: not global; the default applies.
		{`{"keyword":"PermitEmptyPasswords","equals":"no"}`, Compliant, "PermitEmptyPasswords no (default)"},
		{`{"keyword":"ClientAliveInterval","min":1,"max":300}`, Compliant, "ClientAliveInterval 300"},
		{`{"keyword":"LoginGraceTime","max":60}`, NonCompliant, "LoginGraceTime 90 (/etc/ssh/sshd_config line 7), want 60 or less"},
		{`{"keyword":"LogLevel","in":["INFO","VERBOSE"]}`, Compliant, "LogLevel VERBOSE"},
		{`{"keyword":"Ciphers","excludes":["aes128-cbc","3des-cbc"]}`, Compliant, "Ciphers chacha20-poly1305@openssh.com,aes192-ctr,aes256-ctr"},
		{`{"keyword":"MaxStartups","parts":[{"max":10},{"min":30},{"max":60}]}`, NonCompliant, "MaxStartups 10:30:100 (default), want <=10:>=30:<=60"},
		{`{"keyword":"AllowGroups","notEmpty":true}`, NonCompliant, "AllowGroups (not set) (default)"},
	}
	for _, tc := range tests {
		expect(t, eval(t, rule(t, `"sshd":{"settings":[`+tc.setting+`]}`), env), tc.state, tc.ev)
	}
	explicit := rule(t, `"sshd":{"explicit":true,"settings":[{"keyword":"PermitEmptyPasswords","equals":"no"}]}`)
	expect(t, eval(t, explicit, env), NonCompliant, "PermitEmptyPasswords is not set in the configuration (sshd default no), want it set to no")

	notInstalled := tree(t, map[string]string{"/var/lib/dpkg/status": "Package: bash\nStatus: install ok installed\nVersion: 5\n"})
	expect(t, eval(t, explicit, treeEnv(notInstalled)), Compliant, "openssh-server is not installed: sshd settings do not apply")
	noConfig := tree(t, map[string]string{"/var/lib/dpkg/status": sshdInstalled})
	expect(t, eval(t, explicit, treeEnv(noConfig)), Unknown, "/etc/ssh/sshd_config does not exist")
}

func TestSSHDTime(t *testing.T) {
	for in, want := range map[string]int{"90": 90, "2m": 120, "1h30m": 5400, "1d": 86400, "10s": 10, "1W": 604800} {
		if got, err := parseSSHDTime(in); err != nil || got != want {
			t.Errorf("parseSSHDTime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSSHDTime("5x"); err == nil {
		t.Error("5x parsed")
	}
}

// TestSSHDEffectiveMatchesSSHDT runs the real sshd -T inside a Debian tree
// with openssh-server and compares every supported single-valued keyword
// with the effective value this package computes, over configurations that
// exercise Include, Match, duplicates, case and "=".
func TestSSHDEffectiveMatchesSSHDT(t *testing.T) {
	root := hosttools.DebianRoot(t, "openssh-server", "auditd", "cron")
	hosttools.NeedTool(t, "chroot")
	if err := os.MkdirAll(filepath.Join(root, "run/sshd"), 0o755); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(root, "etc/ssh/sshd_config"))
	if err != nil {
		t.Fatal(err)
	}
	variants := []struct {
		name, main string
		dropIns    map[string]string
	}{
		{"debian default", string(orig), nil},
		{"hardened with drop-ins", string(orig), map[string]string{
			"10-harden.conf": "permitrootlogin No\nMaxAuthTries=4\nClientAliveInterval 5m\nClientAliveCountMax 0\nLogLevel verbose\nMaxStartups 10:30:60\nBanner /etc/issue.net\nCompression delayed\nAllowTcpForwarding all\nCiphers -*-cbc\nMACs +hmac-md5\nKexAlgorithms ^diffie-hellman-group14-sha256\nLoginGraceTime 1m\n",
			"20-later.conf":  "PermitRootLogin yes\nX11Forwarding no\nMatch User bob\n PasswordAuthentication no\n",
		}},
		{"match in main", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin prohibit-password\nUsePAM yes\nMaxStartups 20\nMatch Group admins\n  PermitRootLogin yes\n  MaxSessions 2\nInclude /etc/ssh/sshd_config.d/*.conf\n", map[string]string{
			"05-a.conf": "MaxSessions 3\nIgnoreRhosts shosts-only\nGSSAPIAuthentication yes\nKerberosAuthentication yes\n",
		}},
	}
	var keywords []string
	for k, kw := range sshdKeywords {
		if kw.kind != "multi" {
			keywords = append(keywords, k)
		}
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := filepath.Join(root, "etc/ssh/sshd_config.d")
			os.RemoveAll(dir)
			os.MkdirAll(dir, 0o755)
			for n, c := range v.dropIns {
				os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
			}
			os.WriteFile(filepath.Join(root, "etc/ssh/sshd_config"), []byte(v.main), 0o644)
			out, err := exec.Command("chroot", root, "/usr/sbin/sshd", "-T").CombinedOutput()
			if err != nil {
				t.Fatalf("sshd -T: %v\n%s", err, out)
			}
			printed := map[string]string{}
			for _, line := range strings.Split(string(out), "\n") {
				k, val, _ := strings.Cut(line, " ")
				if _, seen := printed[k]; !seen {
					printed[k] = val
				}
			}
			s := newSnapshot(treeEnv(root))
			cfg := s.sshdConfig(sshdMainConfig)
			if cfg.err != nil {
				t.Fatal(cfg.err)
			}
			for _, k := range keywords {
				want, ok := printed[k]
				if !ok {
					t.Errorf("sshd -T does not print %s", k)
					continue
				}
				if got := cfg.effective(k); got.value != want {
					t.Errorf("%s: computed %q, sshd -T prints %q", sshdKeywords[k].name, got.value, want)
				}
			}
		})
	}
}
