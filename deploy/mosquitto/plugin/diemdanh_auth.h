/*
 * diemdanh_auth: the failed-login counters (lockouts.c) shared with the
 * plugin's callbacks (diemdanh_auth.c).
 */
#ifndef DIEMDANH_AUTH_H
#define DIEMDANH_AUTH_H

#define MAX_ENTRIES 100000 /* counters in memory: bound under a spray of usernames */
#define MAX_SAVED 10000    /* counters in the state file, locked ones first */
#define MAX_KEY 300        /* "u:" + a username of at most 256 bytes, or "a:" + an address */

struct fail {
	char *key; /* "u:<name>" or "a:<address>" */
	int n;
	double last;  /* time of the latest failure (monotonic seconds) */
	double until; /* locked out until (monotonic seconds) */
	int saved;    /* in the state file as last written */
};

struct lockouts {
	struct fail *fails;
	int nfails, capfails;
	double base, max; /* first and longest lockout, seconds */
	char *path;       /* plugin_opt_lockout_state_file, or NULL: memory only */
	int dirty;        /* counters changed since the last write */
	int pending;      /* a lock started or a saved counter was reset since the last write */
	double last_write;
};

/* lk_locked: key is locked out at now. */
int lk_locked(struct lockouts *lk, const char *key, double now);
/* lk_failure counts a failed login for key; returns 1 when it starts a lock. */
int lk_failure(struct lockouts *lk, const char *key, int free_failures, double now, const char *what);
/* lk_reset forgets key's counter (a good login). */
void lk_reset(struct lockouts *lk, const char *key);
/* lk_sync writes the state file when a write is pending, at most every 250 ms. */
void lk_sync(struct lockouts *lk, double now);
/* lk_write writes the state file now (atomically: temp file, fsync, rename). */
int lk_write(struct lockouts *lk, double now);
/* lk_load reads the state file; a missing or corrupt file leaves no counters. */
void lk_load(struct lockouts *lk, double now);
void lk_free(struct lockouts *lk);

#endif
