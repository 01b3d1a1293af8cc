package client

import (
	"context"
	"net/http"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// CreateUserWith creates a user from a full UserCreate (e.g. one that must
// change its password at first sign-in).
func (c *Client) CreateUserWith(ctx context.Context, in wire.UserCreate) (wire.User, error) {
	var u wire.User
	err := c.do(ctx, http.MethodPost, "/api/v1/users", in, &u)
	return u, err
}

// ChangeMyPassword changes the signed-in user's password; every session of
// the user ends, this client's token included.
func (c *Client) ChangeMyPassword(ctx context.Context, current, next string) error {
	return c.do(ctx, http.MethodPut, wire.PathMyPassword, wire.PasswordChange{CurrentPassword: current, NewPassword: next}, nil)
}

// SetUserPassword sets another user's password (an administrator's reset).
func (c *Client) SetUserPassword(ctx context.Context, name, password string, mustChange bool) (wire.User, error) {
	var u wire.User
	err := c.do(ctx, http.MethodPut, resourcePath(resource.User(name))+"/password", wire.PasswordSet{Password: password, MustChangePassword: mustChange}, &u)
	return u, err
}

// SetUserDisabled disables or enables a user.
func (c *Client) SetUserDisabled(ctx context.Context, name string, disabled bool) (wire.User, error) {
	var u wire.User
	err := c.do(ctx, http.MethodPatch, resourcePath(resource.User(name)), wire.UserUpdate{Disabled: &disabled}, &u)
	return u, err
}
