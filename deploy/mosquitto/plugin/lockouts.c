/*
 * diemdanh_auth's failed-login counters and their state file.
 *
 * Counters live in memory (at most MAX_ENTRIES). With
 * plugin_opt_lockout_state_file they are also written to that file whenever
 * a lock starts or a written counter is reset by a good login (at most every
 * 250 ms: a burst of locks is written together, from the broker's tick), and
 * on a clean shutdown; they are read back at plugin init, so a restart of
 * mosquitto, even a killed one, does not end a lock. The file is replaced
 * atomically (temp file, fsync, rename, fsync of the directory).
 *
 * Format (text, one counter a line, at most MAX_SAVED lines, locked first):
 *   # diemdanh_auth lockouts v1
 *   <failures> <latest failure> <locked until> <key>
 * times in Unix seconds, the key ("u:<username>" or "a:<address>") with
 * every byte outside '!'..'~' and '%' written as %XX. A missing file is no
 * counters; a file that does not parse as a whole is logged and ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "diemdanh_auth.h"

#define HEADER "# diemdanh_auth lockouts v1"
#define MAX_LINE (3 * MAX_KEY + 100)
#define WRITE_INTERVAL 0.25

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct fail *find(struct lockouts *lk, const char *key)
{
	for (int i = 0; i < lk->nfails; i++) {
		if (strcmp(lk->fails[i].key, key) == 0) return &lk->fails[i];
	}
	return NULL;
}

static void drop(struct lockouts *lk, struct fail *f)
{
	free(f->key);
	*f = lk->fails[--lk->nfails];
}

/* expired: the lockout is over and it has been quiet for as long as the longest lockout. */
static int expired(const struct lockouts *lk, const struct fail *f, double now)
{
	return now >= f->until && now - f->last > lk->max;
}

/* add makes a zero counter for key; NULL when memory or MAX_ENTRIES forbid it. */
static struct fail *add(struct lockouts *lk, const char *key, double now)
{
	if (lk->nfails >= MAX_ENTRIES) {
		for (int i = lk->nfails - 1; i >= 0; i--) {
			if (expired(lk, &lk->fails[i], now)) drop(lk, &lk->fails[i]);
		}
		if (lk->nfails >= MAX_ENTRIES) return NULL;
	}
	if (lk->nfails == lk->capfails) {
		int cap = lk->capfails ? lk->capfails * 2 : 64;
		struct fail *nf = realloc(lk->fails, (size_t)cap * sizeof(*nf));
		if (!nf) return NULL;
		lk->fails = nf;
		lk->capfails = cap;
	}
	char *k = strdup(key);
	if (!k) return NULL;
	struct fail *f = &lk->fails[lk->nfails++];
	memset(f, 0, sizeof(*f));
	f->key = k;
	return f;
}

int lk_locked(struct lockouts *lk, const char *key, double now)
{
	struct fail *f = find(lk, key);
	return f && now < f->until;
}

int lk_failure(struct lockouts *lk, const char *key, int free_failures, double now, const char *what)
{
	struct fail *f = find(lk, key);
	if (f && expired(lk, f, now)) {
		f->n = 0;
	}
	if (!f) f = add(lk, key, now);
	if (!f) return 0;
	f->n++;
	f->last = now;
	lk->dirty = 1;
	if (f->n < free_failures) return 0;
	double d = lk->base;
	for (int i = free_failures; i < f->n && d < lk->max; i++) d *= 2;
	if (d > lk->max) d = lk->max;
	f->until = now + d;
	lk->pending = 1;
	mosquitto_log_printf(MOSQ_LOG_WARNING, "diemdanh_auth: %s %s locked out for %.0f s after %d failed logins", what,
			     key + 2, d, f->n);
	return 1;
}

void lk_reset(struct lockouts *lk, const char *key)
{
	struct fail *f = find(lk, key);
	if (!f) return;
	if (f->saved) lk->pending = 1;
	lk->dirty = 1;
	drop(lk, f);
}

void lk_free(struct lockouts *lk)
{
	for (int i = 0; i < lk->nfails; i++) free(lk->fails[i].key);
	free(lk->fails);
	free(lk->path);
	memset(lk, 0, sizeof(*lk));
}

/* put_key writes key with bytes outside '!'..'~' and '%' as %XX. */
static void put_key(FILE *f, const char *key)
{
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		if (*p < '!' || *p > '~' || *p == '%') {
			fprintf(f, "%%%02X", *p);
		} else {
			fputc(*p, f);
		}
	}
}

/* write_entries writes the live counters, locked ones first, at most MAX_SAVED. */
static void write_entries(struct lockouts *lk, FILE *f, double now, double wall)
{
	int written = 0;
	for (int i = 0; i < lk->nfails; i++) lk->fails[i].saved = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < lk->nfails && written < MAX_SAVED; i++) {
			struct fail *e = &lk->fails[i];
			if (e->saved || expired(lk, e, now) || (pass == 0 && now >= e->until)) continue;
			fprintf(f, "%d %.3f %.3f ", e->n, wall + (e->last - now), e->until > 0 ? wall + (e->until - now) : 0.0);
			put_key(f, e->key);
			fputc('\n', f);
			e->saved = 1;
			written++;
		}
	}
}

/* fsync_dir makes the rename in path's directory durable. */
static int fsync_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash) {
		strcpy(dir, ".");
	} else if (slash == path) {
		strcpy(dir, "/");
	} else {
		if ((size_t)(slash - path) >= sizeof(dir)) return -1;
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0) return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

int lk_write(struct lockouts *lk, double now)
{
	if (!lk->path) return 0;
	lk->pending = 0;
	lk->last_write = now;
	size_t tl = strlen(lk->path) + 5;
	char tmp[tl];
	snprintf(tmp, tl, "%s.tmp", lk->path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f) {
		if (fd >= 0) close(fd);
		goto fail;
	}
	fputs(HEADER "\n", f);
	write_entries(lk, f, now, wall_s());
	int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
	if (fclose(f) != 0 || bad) {
		unlink(tmp);
		goto fail;
	}
	if (rename(tmp, lk->path) != 0) {
		unlink(tmp);
		goto fail;
	}
	if (fsync_dir(lk->path) != 0) goto fail;
	lk->dirty = 0;
	return 0;
fail:
	mosquitto_log_printf(MOSQ_LOG_ERR, "diemdanh_auth: lockout state file %s not written: %s", lk->path,
			     strerror(errno));
	for (int i = 0; i < lk->nfails; i++) lk->fails[i].saved = 1; /* a reset should try again */
	return -1;
}

void lk_sync(struct lockouts *lk, double now)
{
	if (lk->path && lk->pending && (lk->last_write == 0 || now - lk->last_write >= WRITE_INTERVAL)) {
		lk_write(lk, now);
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;
}

/* unescape decodes s (%XX) into out of MAX_KEY+1 bytes; -1 when malformed. */
static int unescape(const char *s, char *out)
{
	size_t n = 0;
	for (; *s; s++) {
		if (n >= MAX_KEY) return -1;
		int c = (unsigned char)*s;
		if (c < '!' || c > '~') return -1;
		if (c == '%') {
			int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);
			if (lo < 0 || (c = hi * 16 + lo) == 0) return -1;
			s += 2;
		}
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return n > 2 && (out[0] == 'u' || out[0] == 'a') && out[1] == ':' ? 0 : -1;
}

/* parse_time reads a Unix time (0: never) followed by a space. */
static int parse_time(char *s, char **end, double *out)
{
	*out = strtod(s, end);
	return *end != s && **end == ' ' && isfinite(*out) && *out >= 0 && *out < 1e11 ? 0 : -1;
}

/* parse_entry reads "<n> <last> <until> <key>" into a counter; NULL on success or the reason. */
static const char *parse_entry(struct lockouts *lk, char *line, double now, double wall)
{
	char *p = line, *end, key[MAX_KEY + 1];
	long n = strtol(p, &end, 10);
	double last, until;
	if (end == p || *end != ' ' || n < 1 || n > 1000000) return "bad failure count";
	if (parse_time(end + 1, &end, &last) != 0 || parse_time(end + 1, &end, &until) != 0) return "bad time";
	if (unescape(end + 1, key) != 0) return "bad key";
	if (find(lk, key)) return "key twice";
	if (last == 0) return "bad time";
	struct fail e = {.n = (int)n, .last = now + (last - wall), .until = until == 0 ? 0 : now + (until - wall)};
	if (e.last > now) e.last = now;                      /* the wall clock went back */
	if (e.until > now + lk->max) e.until = now + lk->max; /* never longer than the longest lock */
	if (expired(lk, &e, now)) return NULL;
	struct fail *f = add(lk, key, now);
	if (!f) return "out of memory";
	e.key = f->key;
	e.saved = 1;
	*f = e;
	return NULL;
}

/* read_file loads every line of f; NULL on success or the reason, with *lineno. */
static const char *read_file(struct lockouts *lk, FILE *f, double now, int *lineno)
{
	char line[MAX_LINE + 2];
	double wall = wall_s();
	for (*lineno = 1; fgets(line, sizeof(line), f); (*lineno)++) {
		size_t l = strlen(line);
		if (l == 0 || line[l - 1] != '\n') return l > MAX_LINE ? "line too long" : "no end of line";
		line[l - 1] = '\0';
		if (*lineno == 1) {
			if (strcmp(line, HEADER) != 0) return "not a diemdanh_auth lockout file";
			continue;
		}
		if (*lineno > MAX_SAVED + 1) return "too many lines";
		const char *why = parse_entry(lk, line, now, wall);
		if (why) return why;
	}
	if (ferror(f)) return strerror(errno);
	return *lineno == 1 ? "empty file" : NULL;
}

void lk_load(struct lockouts *lk, double now)
{
	if (!lk->path) return;
	FILE *f = fopen(lk->path, "r");
	if (!f) {
		mosquitto_log_printf(errno == ENOENT ? MOSQ_LOG_NOTICE : MOSQ_LOG_ERR,
				     "diemdanh_auth: lockout state file %s: %s; starting with no lockouts", lk->path,
				     strerror(errno));
		return;
	}
	int lineno = 0;
	const char *why = read_file(lk, f, now, &lineno);
	fclose(f);
	if (why) {
		for (int i = 0; i < lk->nfails; i++) free(lk->fails[i].key);
		lk->nfails = 0;
		mosquitto_log_printf(MOSQ_LOG_ERR,
				     "diemdanh_auth: lockout state file %s:%d: %s; ignored, starting with no lockouts",
				     lk->path, lineno, why);
		return;
	}
	int nlocked = 0;
	for (int i = 0; i < lk->nfails; i++) nlocked += now < lk->fails[i].until;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "diemdanh_auth: lockout state file %s: %d counters, %d locked", lk->path,
			     lk->nfails, nlocked);
}
