package caddysnake

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// workerCredential resolves the user and group settings (a name or a
// number each) to the credential worker processes are started with: the
// user's uid, the group's gid (default: the user's primary group) and no
// supplementary groups. Only root can start a process as someone else, so
// anything else is refused here, at validate.
func workerCredential(userName, groupName string) (*syscall.Credential, error) {
	cred := &syscall.Credential{Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid()), Groups: []uint32{}}
	if userName != "" {
		u, err := lookupUser(userName)
		if err != nil {
			return nil, fmt.Errorf("python: user %q: %v", userName, err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("python: user %q: uid %q or gid %q is not a number", userName, u.Uid, u.Gid)
		}
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
	}
	if groupName != "" {
		g, err := lookupGroup(groupName)
		if err != nil {
			return nil, fmt.Errorf("python: group %q: %v", groupName, err)
		}
		gid, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("python: group %q: gid %q is not a number", groupName, g.Gid)
		}
		cred.Gid = uint32(gid)
	}
	if euid := os.Geteuid(); euid != 0 {
		return nil, fmt.Errorf("python: user/group: caddy runs as uid %d, not root, so it cannot start worker processes as another user or group; "+
			"remove user and group, or run caddy as root (it then serves the app as the user given)", euid)
	}
	return cred, nil
}

func lookupUser(s string) (*user.User, error) {
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		return user.LookupId(s)
	}
	return user.Lookup(s)
}

func lookupGroup(s string) (*user.Group, error) {
	if _, err := strconv.ParseUint(s, 10, 32); err == nil {
		return user.LookupGroupId(s)
	}
	return user.LookupGroup(s)
}
