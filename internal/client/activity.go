package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// EachActivity calls fn for every entry matching q, oldest first, page by
// page (q.Max is ignored): an export of millions of entries holds one page
// in memory. It stops at fn's first error and returns it.
func (c *Client) EachActivity(ctx context.Context, q ActivityQuery, fn func(wire.ActivityEntry) error) error {
	v := url.Values{"order": {"asc"}, "$top": {"1000"}}
	for k, s := range map[string]string{"scope": q.Scope, "caller": q.Caller, "action": q.Action, "result": q.Result} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	next := withQuery("/api/v1/activityLogs", v)
	for next != "" {
		var page wire.List[wire.ActivityEntry]
		if err := c.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return err
		}
		for _, e := range page.Value {
			if err := fn(e); err != nil {
				return err
			}
		}
		if page.NextLink == next {
			return fmt.Errorf("server returned a nextLink that points at the same page")
		}
		next = page.NextLink
	}
	return nil
}

// WalkActivityChain reads the activity chain in order from its base to the
// head it had when the walk began: it calls start with that base and head,
// then fn for each entry, and returns the base and head. fn's first error
// stops the walk and is returned.
func (c *Client) WalkActivityChain(ctx context.Context, start func(base, head wire.ChainLink), fn func(wire.ActivityEntry) error) (base, head wire.ChainLink, err error) {
	next := "/api/v1/activityChain?after=0&%24top=1000"
	first := true
	for next != "" {
		var page wire.ActivityChainPage
		if err := c.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return base, head, err
		}
		if first {
			base, head, first = page.Base, page.Head, false
			start(base, head)
		}
		last := int64(-1)
		for _, e := range page.Value {
			if e.Seq > head.Seq {
				return base, head, nil // sealed after the walk began
			}
			if err := fn(e); err != nil {
				return base, head, err
			}
			last = e.Seq
		}
		if page.NextLink == "" || last < 0 || last >= head.Seq {
			break
		}
		next = "/api/v1/activityChain?after=" + strconv.FormatInt(last, 10) + "&%24top=1000"
	}
	return base, head, nil
}
