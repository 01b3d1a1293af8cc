package jit

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// The kernel's answers on machines without nftables: each becomes
// ErrUnavailable with the reason in words.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		errno       syscall.Errno
		unavailable bool
		says        string
	}{
		{syscall.EPERM, true, "needs root or CAP_NET_ADMIN"},
		{syscall.EACCES, true, "needs root or CAP_NET_ADMIN"},
		{syscall.EPROTONOSUPPORT, true, "no nfnetlink"},
		{syscall.EOPNOTSUPP, true, "module nf_tables"},
		{syscall.EAFNOSUPPORT, true, "module nf_tables"},
		{syscall.EINVAL, false, "invalid argument"},
	} {
		err := classify("apply", fmt.Errorf("netlink receive: %w", tc.errno))
		if errors.Is(err, ErrUnavailable) != tc.unavailable || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v (unavailable=%v)", tc.errno, err, errors.Is(err, ErrUnavailable))
		}
	}
}
