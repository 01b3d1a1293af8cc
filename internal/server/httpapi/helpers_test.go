package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
)

func decodeJSONBody(resp *http.Response, v any) error {
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
