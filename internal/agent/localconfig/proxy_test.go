package localconfig

import (
	"net/http"
	"testing"
)

func TestProxyHonoursURLAndBypass(t *testing.T) {
	t.Parallel()
	var c Config
	must(t, c.Set(KeyProxyURL, "http://proxy.corp:3128"))
	must(t, c.Set(KeyProxyBypass, ".internal,cp.example,10.0.0.0/8"))
	for host, wantProxy := range map[string]bool{
		"cp.corral.io": true, "cp.example": false, "CP.EXAMPLE": false, "a.b.internal": false,
		"10.1.2.3": false, "192.168.1.1": true,
	} {
		r, _ := http.NewRequest("GET", "https://"+host+":8443/agent/v1/desired", nil)
		e := c.Effective()
		u, err := e.Proxy(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := u != nil; got != wantProxy || got && u.Host != "proxy.corp:3128" {
			t.Errorf("%s: proxy %v, want proxied=%v", host, u, wantProxy)
		}
	}
}
