package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

func auditList(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	var p pageFlags
	p.register(fs)
	return func(ctx context.Context, c *cli, _ []string) error {
		verified := true
		events, next, err := collect(ctx, c, p, func(ctx context.Context, size int32, token string) ([]*adminv1.AuditEvent, string, error) {
			resp, err := c.admin.ListAuditEvents(ctx, &adminv1.ListAuditEventsRequest{PageSize: size, PageToken: token})
			if err == nil && !resp.GetChainVerified() {
				verified = false
			}
			return resp.GetEvents(), resp.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		if !verified {
			fmt.Fprintln(c.stderr, "valisectl: warning: the audit log's hash chain does not verify: the log may have been tampered with")
		}
		if c.g.json {
			return printJSON(c.stdout, &adminv1.ListAuditEventsResponse{Events: events, NextPageToken: next, ChainVerified: verified})
		}
		t := newTable(c.stdout, "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL")
		for _, e := range events {
			t.row(strconv.FormatInt(e.GetSeq(), 10), fmtTime(e.GetTime()), e.GetActor(), e.GetAction(), e.GetTarget(), e.GetDetail())
		}
		err = t.flush()
		c.moreHint(next)
		return err
	}
}
