package main

import (
	"context"
	"flag"
	"fmt"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

func userCreate(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.CreateUserResponse, error) {
			return c.admin.CreateUser(ctx, &adminv1.CreateUserRequest{User: args[0], Password: c.password})
		})
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, resp)
		}
		_, err = fmt.Fprintf(c.stdout, "created user %s\n", cell(resp.GetUser().GetUser()))
		return err
	}
}

func userList(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	var p pageFlags
	p.register(fs)
	return func(ctx context.Context, c *cli, _ []string) error {
		users, next, err := collect(ctx, c, p, func(ctx context.Context, size int32, token string) ([]*adminv1.User, string, error) {
			resp, err := c.admin.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: size, PageToken: token})
			return resp.GetUsers(), resp.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, &adminv1.ListUsersResponse{Users: users, NextPageToken: next})
		}
		t := newTable(c.stdout, "USER", "ACTIVE", "CREATED", "UPDATED")
		for _, u := range users {
			t.row(u.GetUser(), yesNo(u.GetActive()), fmtTime(u.GetCreatedTime()), fmtTime(u.GetUpdatedTime()))
		}
		err = t.flush()
		c.moreHint(next)
		return err
	}
}

func userShow(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.GetUserResponse, error) {
			return c.admin.GetUser(ctx, &adminv1.GetUserRequest{User: args[0]})
		})
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, resp)
		}
		u := resp.GetUser()
		t := newTable(c.stdout)
		t.row("user:", u.GetUser())
		t.row("active:", yesNo(u.GetActive()))
		t.row("created:", fmtTime(u.GetCreatedTime()))
		t.row("updated:", fmtTime(u.GetUpdatedTime()))
		t.row("devices:", fmt.Sprint(resp.GetDeviceCount()))
		return t.flush()
	}
}

func userDeactivate(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.DeactivateUserResponse, error) {
			return c.admin.DeactivateUser(ctx, &adminv1.DeactivateUserRequest{User: args[0]})
		})
		return c.done(resp, err, "deactivated user %s", args[0])
	}
}

func userReactivate(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.ReactivateUserResponse, error) {
			return c.admin.ReactivateUser(ctx, &adminv1.ReactivateUserRequest{User: args[0]})
		})
		return c.done(resp, err, "reactivated user %s", args[0])
	}
}

func userResetPassword(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.ResetPasswordResponse, error) {
			return c.admin.ResetPassword(ctx, &adminv1.ResetPasswordRequest{User: args[0], Password: c.password})
		})
		return c.done(resp, err, "reset the password of user %s", args[0])
	}
}
