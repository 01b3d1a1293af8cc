package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/corralhq/corral/internal/wire"
)

func bulkPath(sub string) string { return subPath(sub) + "/bulkOperations" }

// CreateBulkOperation sets or deletes an extension, or starts a run, on
// every machine of a scope (and tag) in one request.
func (c *Client) CreateBulkOperation(ctx context.Context, sub string, body wire.BulkOperationCreate) (wire.BulkOperation, error) {
	var op wire.BulkOperation
	err := c.do(ctx, http.MethodPost, bulkPath(sub), body, &op)
	return op, err
}

// GetBulkOperation reads a bulk operation with its totals.
func (c *Client) GetBulkOperation(ctx context.Context, sub, id string) (wire.BulkOperation, error) {
	var op wire.BulkOperation
	err := c.do(ctx, http.MethodGet, bulkPath(sub)+"/"+url.PathEscape(id), nil, &op)
	return op, err
}

// ListBulkOperations lists a subscription's bulk operations, newest first;
// max bounds how many (0: all).
func (c *Client) ListBulkOperations(ctx context.Context, sub string, max int) ([]wire.BulkOperation, error) {
	return listAll[wire.BulkOperation](ctx, c, bulkPath(sub), max)
}

// ListBulkMachines lists the machines of a bulk operation with their
// results (result: only that one, "" for all); max bounds how many (0: all).
func (c *Client) ListBulkMachines(ctx context.Context, sub, id, result string, max int) ([]wire.BulkMachineResult, error) {
	q := url.Values{"$top": {"1000"}}
	if result != "" {
		q.Set("result", result)
	}
	return listAll[wire.BulkMachineResult](ctx, c, withQuery(bulkPath(sub)+"/"+url.PathEscape(id)+"/machines", q), max)
}
