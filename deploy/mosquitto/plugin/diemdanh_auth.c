/*
 * diemdanh_auth: a mosquitto 2.0 (plugin API v5) password check with a
 * lockout after repeated failed logins, so the external broker refuses
 * password guessing the same way the hub's embedded broker does.
 *
 * Passwords come from a mosquitto_passwd file (plugin_opt_password_file):
 *   user:$7$<iterations>$<salt b64>$<hash b64>   PBKDF2-HMAC-SHA512
 *   user:$6$<salt b64>$<hash b64>                SHA512(password + salt)
 * The file is re-read when its mtime or size changes (no reload needed):
 * at each login and, at most every 250 ms, from the broker's tick. When a
 * user's line changed (password rotated) or went away (gate deactivated),
 * that user's connected clients are disconnected at once, so old
 * credentials never keep a session alive.
 *
 * Lockout: after plugin_opt_max_failures failed logins for a username
 * (plugin_opt_address_max_failures for a client address) every login for
 * it is refused, without checking the password, for plugin_opt_lockout_seconds;
 * each further failure doubles that up to plugin_opt_lockout_max_seconds.
 * Counters are forgotten after a quiet period as long as the longest
 * lockout; a good login resets the username's counter. With
 * plugin_opt_lockout_state_file the counters are kept on disk and survive a
 * restart of mosquitto (lockouts.c).
 *
 * mosquitto calls plugins from its single main thread: no locking needed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "diemdanh_auth.h"

#define MAX_HASH 128

struct user {
	char *name;
	int kind; /* 6 or 7 */
	int iterations;
	unsigned char salt[MAX_HASH];
	int salt_len;
	unsigned char hash[MAX_HASH];
	int hash_len;
};

struct state {
	mosquitto_plugin_id_t *id;
	char *path;
	struct timespec mtime;
	off_t size;
	int loaded;
	double last_check; /* of the password file, from the tick */
	struct user *users;
	int nusers;
	int max_failures, addr_max_failures;
	struct lockouts lk;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void free_users(struct user *u, int n)
{
	for (int i = 0; i < n; i++) {
		free(u[i].name);
	}
	free(u);
}

/* b64 decodes s into out (at most MAX_HASH bytes); returns the length or -1. */
static int b64(const char *s, size_t len, unsigned char *out)
{
	unsigned char buf[MAX_HASH + 4];
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(buf)) {
		return -1;
	}
	int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (n < 0) {
		return -1;
	}
	if (s[len - 1] == '=') n--;
	if (s[len - 2] == '=') n--;
	if (n <= 0 || n > MAX_HASH) {
		return -1;
	}
	memcpy(out, buf, (size_t)n);
	return n;
}

/* parse_line fills u from "name:$7$iter$salt$hash" or "name:$6$salt$hash". */
static int parse_line(char *line, struct user *u)
{
	char *colon = strchr(line, ':');
	if (!colon || colon == line) {
		return -1;
	}
	*colon = '\0';
	char *h = colon + 1;
	char *parts[4] = {0};
	int np = 0;
	if (h[0] != '$') {
		return -1;
	}
	for (char *p = h + 1; p && np < 4; np++) {
		parts[np] = p;
		p = strchr(p, '$');
		if (p) *p++ = '\0';
	}
	memset(u, 0, sizeof(*u));
	if (np == 4 && strcmp(parts[0], "7") == 0) {
		char *end;
		long it = strtol(parts[1], &end, 10);
		if (*end || it < 1 || it > 10000000) return -1;
		u->kind = 7;
		u->iterations = (int)it;
		parts[1] = parts[2];
		parts[2] = parts[3];
	} else if (np == 3 && strcmp(parts[0], "6") == 0) {
		u->kind = 6;
	} else {
		return -1;
	}
	u->salt_len = b64(parts[1], strlen(parts[1]), u->salt);
	u->hash_len = b64(parts[2], strlen(parts[2]), u->hash);
	if (u->salt_len < 0 || u->hash_len < 16) {
		return -1;
	}
	u->name = strdup(line);
	return u->name ? 0 : -1;
}

static const struct user *find_user(const struct user *users, int n, const char *name)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(users[i].name, name) == 0) return &users[i];
	}
	return NULL;
}

static int same_secret(const struct user *a, const struct user *b)
{
	return a->kind == b->kind && a->iterations == b->iterations && a->salt_len == b->salt_len &&
	       a->hash_len == b->hash_len && memcmp(a->salt, b->salt, (size_t)a->salt_len) == 0 &&
	       memcmp(a->hash, b->hash, (size_t)a->hash_len) == 0;
}

/* kick_changed disconnects the clients of every user whose line changed or went away. */
static void kick_changed(const struct user *old, int nold, const struct user *cur, int ncur)
{
	for (int i = 0; i < nold; i++) {
		const struct user *u = find_user(cur, ncur, old[i].name);
		if (u && same_secret(u, &old[i])) continue;
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "diemdanh_auth: %s %s: disconnecting its clients", old[i].name,
				     u ? "password changed" : "removed");
		mosquitto_kick_client_by_username(old[i].name, true);
	}
}

/* load (re)reads the password file when it changed; keeps the old copy on error. */
static int load(struct state *s)
{
	struct stat st;
	if (stat(s->path, &st) != 0) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "diemdanh_auth: password file %s: %s", s->path, strerror(errno));
		return -1;
	}
	if (s->loaded && st.st_mtim.tv_sec == s->mtime.tv_sec && st.st_mtim.tv_nsec == s->mtime.tv_nsec &&
	    st.st_size == s->size) {
		return 0;
	}
	FILE *f = fopen(s->path, "r");
	if (!f) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "diemdanh_auth: password file %s: %s", s->path, strerror(errno));
		return -1;
	}
	struct user *users = NULL;
	int n = 0, cap = 0, lineno = 0;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		size_t l = strlen(line);
		while (l > 0 && isspace((unsigned char)line[l - 1])) line[--l] = '\0';
		if (l == 0 || line[0] == '#') continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct user *nu = realloc(users, (size_t)cap * sizeof(*users));
			if (!nu) {
				fclose(f);
				free_users(users, n);
				return -1;
			}
			users = nu;
		}
		if (parse_line(line, &users[n]) != 0) {
			mosquitto_log_printf(MOSQ_LOG_WARNING, "diemdanh_auth: %s:%d: not a mosquitto_passwd line, ignored",
					     s->path, lineno);
			continue;
		}
		n++;
	}
	fclose(f);
	if (s->loaded) kick_changed(s->users, s->nusers, users, n);
	free_users(s->users, s->nusers);
	s->users = users;
	s->nusers = n;
	s->mtime = st.st_mtim;
	s->size = st.st_size;
	s->loaded = 1;
	mosquitto_log_printf(MOSQ_LOG_INFO, "diemdanh_auth: loaded %d users from %s", n, s->path);
	return 0;
}

static int verify(struct state *s, const char *username, const char *password)
{
	const struct user *u = find_user(s->users, s->nusers, username);
	unsigned char out[MAX_HASH];
	if (!u) {
		/* Comparable work, so timing does not reveal which usernames exist. */
		PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const unsigned char *)"diemdanh", 8, 101,
				  EVP_sha512(), 64, out);
		return 0;
	}
	if (u->kind == 7) {
		if (!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), u->salt, u->salt_len, u->iterations,
				       EVP_sha512(), u->hash_len, out)) {
			return 0;
		}
	} else {
		unsigned int len = 0;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) &&
			 EVP_DigestUpdate(ctx, password, strlen(password)) &&
			 EVP_DigestUpdate(ctx, u->salt, (size_t)u->salt_len) && EVP_DigestFinal_ex(ctx, out, &len);
		EVP_MD_CTX_free(ctx);
		if (!ok || (int)len != u->hash_len) {
			return 0;
		}
	}
	return CRYPTO_memcmp(out, u->hash, (size_t)u->hash_len) == 0;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	struct state *s = userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	if (!ed->username || strlen(ed->username) > 256) {
		return MOSQ_ERR_AUTH; /* allow_anonymous false refuses these anyway */
	}
	const char *addr = mosquitto_client_address(ed->client);
	if (!addr) addr = "?";
	size_t ul = strlen(ed->username) + 3, al = strlen(addr) + 3;
	char ukey[ul], akey[al];
	snprintf(ukey, ul, "u:%s", ed->username);
	snprintf(akey, al, "a:%s", addr);
	double now = now_s();
	if (lk_locked(&s->lk, ukey, now) || lk_locked(&s->lk, akey, now)) {
		return MOSQ_ERR_AUTH;
	}
	load(s);
	/* A username without a password is a failed login too. */
	if (ed->password && verify(s, ed->username, ed->password)) {
		lk_reset(&s->lk, ukey);
		lk_sync(&s->lk, now);
		return MOSQ_ERR_SUCCESS;
	}
	lk_failure(&s->lk, ukey, s->max_failures, now, "user");
	lk_failure(&s->lk, akey, s->addr_max_failures, now, "address");
	/* A lock is on disk before the refusal is sent (within 250 ms of another write: by the tick). */
	lk_sync(&s->lk, now);
	return MOSQ_ERR_AUTH;
}

/* on_tick re-reads a changed password file at most every 250 ms and writes
 * lockouts that a burst of locks left unwritten. */
static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	struct state *s = userdata;
	double now = now_s();
	if (now - s->last_check >= 0.25) {
		s->last_check = now;
		load(s);
	}
	lk_sync(&s->lk, now);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) return 5;
	}
	return -1;
}

static int opt_int(const char *key, const char *value, int min, int *out)
{
	char *end;
	long v = strtol(value, &end, 10);
	if (*value == '\0' || *end || v < min || v > 100000000) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "diemdanh_auth: plugin_opt_%s: %s is not a number >= %d", key, value,
				     min);
		return -1;
	}
	*out = (int)v;
	return 0;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
			  int option_count)
{
	struct state *s = calloc(1, sizeof(*s));
	if (!s) return MOSQ_ERR_NOMEM;
	int base = 1, max = 900, addr_max = -1;
	s->max_failures = 5;
	for (int i = 0; i < option_count; i++) {
		const char *k = options[i].key, *v = options[i].value;
		int rc = 0;
		if (strcmp(k, "password_file") == 0) {
			free(s->path);
			s->path = strdup(v);
		} else if (strcmp(k, "max_failures") == 0) {
			rc = opt_int(k, v, 1, &s->max_failures);
		} else if (strcmp(k, "address_max_failures") == 0) {
			rc = opt_int(k, v, 1, &addr_max);
		} else if (strcmp(k, "lockout_seconds") == 0) {
			rc = opt_int(k, v, 1, &base);
		} else if (strcmp(k, "lockout_max_seconds") == 0) {
			rc = opt_int(k, v, 1, &max);
		} else if (strcmp(k, "lockout_state_file") == 0) {
			free(s->lk.path);
			s->lk.path = *v ? strdup(v) : NULL;
		} else {
			mosquitto_log_printf(MOSQ_LOG_ERR, "diemdanh_auth: unknown option plugin_opt_%s", k);
			rc = -1;
		}
		if (rc != 0) goto fail;
	}
	if (!s->path) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "diemdanh_auth: plugin_opt_password_file is required");
		goto fail;
	}
	if (max < base) max = base;
	s->lk.base = base;
	s->lk.max = max;
	s->addr_max_failures = addr_max > 0 ? addr_max : s->max_failures * 5;
	if (load(s) != 0) goto fail;
	lk_load(&s->lk, now_s());
	s->id = identifier;
	if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, s) != MOSQ_ERR_SUCCESS) {
		goto fail;
	}
	if (mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, s) != MOSQ_ERR_SUCCESS) {
		mosquitto_callback_unregister(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
		goto fail;
	}
	*userdata = s;
	return MOSQ_ERR_SUCCESS;
fail:
	free_users(s->users, s->nusers);
	lk_free(&s->lk);
	free(s->path);
	free(s);
	return MOSQ_ERR_INVAL;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)options;
	(void)option_count;
	struct state *s = userdata;
	if (!s) return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(s->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(s->id, MOSQ_EVT_TICK, on_tick, NULL);
	if (s->lk.dirty || s->lk.pending) lk_write(&s->lk, now_s());
	free_users(s->users, s->nusers);
	lk_free(&s->lk);
	free(s->path);
	free(s);
	return MOSQ_ERR_SUCCESS;
}
