package resource_test

import (
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/resource"
)

func TestNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"vm1", true}, {"a", true}, {"A.b_c-d", true}, {strings.Repeat("x", 63), true},
		{"", false}, {strings.Repeat("x", 64), false}, {"-vm", false}, {".vm", false}, {"vm 1", false}, {"vm/1", false}, {"vé", false},
		{"web.", false}, {"web..", false}, {"a.b", true}, // a trailing dot is refused (issue 7)
	} {
		if got := resource.ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
		if err := resource.CheckName("machine", tc.name); (err == nil) != tc.ok || (err != nil && !strings.HasPrefix(err.Error(), "machine name ")) {
			t.Errorf("CheckName(%q) = %v", tc.name, err)
		}
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	many := map[string]string{}
	for i := range resource.MaxTags + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for _, tc := range []struct {
		tags    map[string]string
		wantErr string
	}{
		{nil, ""},
		{map[string]string{"env": "prod", "team:owner/x": "", "a.b_c-d": strings.Repeat("v", 256)}, ""},
		{many, "at most 50 tags"},
		{map[string]string{"bad key": "v"}, "tag key \"bad key\" is not valid"},
		{map[string]string{"k": strings.Repeat("v", 257)}, "longer than 256"},
		{map[string]string{"k": "a\nb"}, "control characters"},
		{map[string]string{"k": "\x1b[2J"}, "control characters"},
		{map[string]string{"k": "a\u202eb"}, "control characters"},
	} {
		err := resource.CheckTags(tc.tags)
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckTags(%v) = %v, want %q", tc.tags, err, tc.wantErr)
		}
	}
	if !resource.ValidTagKey("env") || resource.ValidTagKey("=x") {
		t.Error("ValidTagKey")
	}
}
