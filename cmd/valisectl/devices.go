package main

import (
	"context"
	"flag"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

func deviceList(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	var p pageFlags
	p.register(fs)
	return func(ctx context.Context, c *cli, args []string) error {
		devices, next, err := collect(ctx, c, p, func(ctx context.Context, size int32, token string) ([]*adminv1.Device, string, error) {
			resp, err := c.admin.ListUserDevices(ctx, &adminv1.ListUserDevicesRequest{User: args[0], PageSize: size, PageToken: token})
			return resp.GetDevices(), resp.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, &adminv1.ListUserDevicesResponse{Devices: devices, NextPageToken: next})
		}
		t := newTable(c.stdout, "DEVICE", "NAME", "CREATED", "KEYS")
		for _, d := range devices {
			t.row(d.GetDeviceId(), d.GetDisplayName(), fmtTime(d.GetCreatedTime()), yesNo(d.GetHasKeys()))
		}
		err = t.flush()
		c.moreHint(next)
		return err
	}
}

func deviceRevoke(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.RevokeDeviceResponse, error) {
			return c.admin.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{User: args[0], DeviceId: args[1]})
		})
		return c.done(resp, err, "revoked device %s of user %s", args[1], args[0])
	}
}
