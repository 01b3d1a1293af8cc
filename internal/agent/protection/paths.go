package protection

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// hostFS maps the host's paths (as settings, scans and alerts name them)
// to where they are for this agent: under its --root, "/" in production.
type hostFS struct {
	root string // the real path of the host root, "/" in production
}

func newHostFS(root string) hostFS {
	if root == "" {
		root = "/"
	}
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	return hostFS{root: root}
}

// local is where host path p is for this agent.
func (h hostFS) local(p string) string {
	return filepath.Join(h.root, filepath.Clean("/"+p))
}

// host is the host's path for a local path under the root ("" if it is
// not under it).
func (h hostFS) host(local string) string {
	if h.root == "/" {
		return local
	}
	switch {
	case local == h.root:
		return "/"
	case strings.HasPrefix(local, h.root+"/"):
		return strings.TrimPrefix(local, h.root)
	}
	return ""
}

// inside reports whether local (a real path) is the root or below it.
func (h hostFS) inside(local string) bool {
	return h.root == "/" || local == h.root || strings.HasPrefix(local, h.root+"/")
}

// quickScanPaths are the common drop locations a quick scan covers: where
// downloads, web uploads, cron jobs and temporary payloads land.
var quickScanPaths = []string{
	"/tmp", "/var/tmp", "/dev/shm", "/root", "/home", "/var/www", "/srv",
	"/usr/local/bin", "/usr/local/sbin", "/etc/cron.d", "/etc/cron.daily", "/etc/cron.hourly",
	"/var/spool/cron", "/etc/init.d", "/etc/systemd/system", "/opt",
}

// networkFS are filesystem types a full scan does not enter: not local.
var networkFS = map[string]bool{"nfs": true, "nfs4": true, "cifs": true, "smb3": true, "smbfs": true, "ceph": true,
	"glusterfs": true, "9p": true, "afs": true, "fuse.sshfs": true, "fuse.s3fs": true, "fuse.rclone": true, "lustre": true,
	"gpfs": true, "fuse.glusterfs": true, "davfs": true, "fuse.davfs": true}

// networkMounts are the mount points under the root whose filesystems are
// remote, from /proc/self/mountinfo.
func (h hostFS) networkMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		if networkFS[fields[sep+1]] && h.inside(mp) {
			out = append(out, mp)
		}
	}
	return out
}
