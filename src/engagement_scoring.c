/*
 * engagement_scoring.c: PostgreSQL entry points of the engagement_scoring extension.
 *
 * This file is C on purpose: the model lives in the C++ kernel (scoring_kernel.cpp), which is
 * reached only through the noexcept, status-returning API of scoring_kernel.h.  So no C++
 * exception can cross into PostgreSQL, and every ereport() below is raised from a C frame that
 * owns no C++ object.
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "btyd_kernel.h"
#include "scoring_kernel.h"

PG_MODULE_MAGIC;

#define ES_ERRLEN 256

/* The kernel's status codes as SQLSTATEs. */
static int
es_sqlstate(int status)
{
	switch (status)
	{
		case ES_INVALID_PARAMETER:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case ES_OUT_OF_RANGE:
			return ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
		case ES_OUT_OF_MEMORY:
			return ERRCODE_OUT_OF_MEMORY;
		default:
			return ERRCODE_INTERNAL_ERROR;
	}
}

static void
es_raise(int status, const char *message)
{
	ereport(ERROR, (errcode(es_sqlstate(status)), errmsg("%s", message)));
}

static MemoryContext
es_aggcontext(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(ERROR, "%s called in non-aggregate context", fname);
	return aggcontext;
}

static TimestampTz
es_finite_timestamp(Datum d, const char *what)
{
	TimestampTz ts = DatumGetTimestampTz(d);

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite timestamp", what)));
	return ts;
}

/* ---------------------------------------------------------------------------------------------
 * Scoring profiles, resolved once per query and cached in the transition function's fn_extra.
 * -------------------------------------------------------------------------------------------*/

/*
 * A resolved profile: its name and values.  The cache interns them in fn_mcxt (one entry per
 * distinct name and values, never changed or freed during the query), so two pointers to
 * entries are equal exactly when the profiles are.  Zero-padded, so entries compare by memcmp.
 */
typedef struct NamedProfile
{
	char		name[NAMEDATALEN];
	es_profile	values;
} NamedProfile;

typedef struct ProfileCache
{
	List	   *interned;		/* NamedProfile *, every entry of this query */
	/* score_events(..., profile text): the entries read by name, and the previous row's */
	List	   *by_name;
	const NamedProfile *last_by_name;
	/*
	 * score_events(..., profile jsonb): the last documents seen (a few, so that rows alternating
	 * between profiles do not reread them) and their entries.
	 */
	struct
	{
		Jsonb	   *doc;
		const NamedProfile *profile;
	}			documents[8];
	int			next_document;
	/* engagement.event_type's OID per kernel event type, for the transition function */
	Oid			enum_type;
	Oid			enum_oids[ES_EVENT_TYPES];
} ProfileCache;

static ProfileCache *
es_cache(FunctionCallInfo fcinfo)
{
	if (fcinfo->flinfo->fn_extra == NULL)
		fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ProfileCache));
	return (ProfileCache *) fcinfo->flinfo->fn_extra;
}

/* The model parameters in es_profile's field order (it is 27 doubles), then the name. */
#define ES_PROFILE_VALUES ((int) (sizeof(es_profile) / sizeof(double)))
StaticAssertDecl(sizeof(es_profile) == 27 * sizeof(double), "es_profile is 27 doubles");
static const char *const profile_columns =
	"lookback_days, recency_tau_days, frequency_min_days, frequency_ref_rate, monetary_ref_value, "
	"half_life_days, time_decay_ref, decay_weight_delivered, decay_weight_opened, decay_weight_clicked, "
	"decay_weight_responded, decay_weight_converted, decay_weight_opted_out, decay_weight_bounced, "
	"weight_recency, weight_frequency, weight_monetary, weight_time_decay, weight_diversity, "
	"opt_out_penalty, model_r, model_alpha, model_a, model_b, horizon_days, conv_prior_a, conv_prior_b, "
	"name";

/*
 * Reads one profile row, "SELECT <profile_columns> FROM <from>" with $1 = arg, into *out
 * (zeroed first).  False when there is no row.  A missing value becomes NaN, which the kernel's
 * validation rejects by name.
 */
static bool
es_read_profile(const char *from, Oid argtype, Datum arg, const char *display, NamedProfile *out)
{
	StringInfoData query;
	double	   *v = (double *) &out->values;
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	int			ret;
	int			i;
	char		err[ES_ERRLEN];

	memset(out, 0, sizeof(NamedProfile));
	initStringInfo(&query);
	appendStringInfo(&query, "SELECT %s FROM %s", profile_columns, from);
	SPI_connect();
	ret = SPI_execute_with_args(query.data, 1, &argtype, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading scoring profile %s failed: %s", display, SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		SPI_finish();
		return false;
	}
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	for (i = 0; i < ES_PROFILE_VALUES; i++)
	{
		Datum		d = SPI_getbinval(row, desc, i + 1, &isnull);

		v[i] = isnull ? get_float8_nan() : DatumGetFloat8(d);
	}
	{
		Datum		d = SPI_getbinval(row, desc, ES_PROFILE_VALUES + 1, &isnull);

		if (isnull || VARSIZE_ANY_EXHDR(DatumGetPointer(d)) == 0 ||
			VARSIZE_ANY_EXHDR(DatumGetPointer(d)) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("scoring profile %s needs a name of 1 to %d bytes", display, NAMEDATALEN - 1)));
		text_to_cstring_buffer((text *) DatumGetPointer(d), out->name, NAMEDATALEN);
	}
	SPI_finish();

	/* The table's constraints make this impossible for stored profiles; the kernel checks anyway. */
	if (es_validate_profile(&out->values, err, sizeof err) != ES_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scoring profile %s is invalid: %s", display, err)));
	return true;
}

/* The cache's entry for p, made on first sight. */
static const NamedProfile *
es_intern_profile(FunctionCallInfo fcinfo, ProfileCache *cache, const NamedProfile *p)
{
	ListCell   *lc;
	NamedProfile *copy;
	MemoryContext old;

	foreach(lc, cache->interned)
		if (memcmp(lfirst(lc), p, sizeof(NamedProfile)) == 0)
			return (const NamedProfile *) lfirst(lc);
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	copy = palloc(sizeof(NamedProfile));
	*copy = *p;
	cache->interned = lappend(cache->interned, copy);
	MemoryContextSwitchTo(old);
	return copy;
}

/* Whether entry p is named name (len bytes, not NUL-terminated): a byte comparison. */
static inline bool
es_profile_named(const NamedProfile *p, const char *name, int len)
{
	return len < NAMEDATALEN && p->name[len] == '\0' && memcmp(p->name, name, len) == 0;
}

/* The profile called name (len bytes, not NUL-terminated), read from engagement.scoring_profiles
 * on its first use in the query. */
static const NamedProfile *
es_profile_by_name(FunctionCallInfo fcinfo, const char *name, int len)
{
	ProfileCache *cache = es_cache(fcinfo);
	NamedProfile found;
	const NamedProfile *entry;
	ListCell   *lc;
	char	   *cname;
	MemoryContext old;

	/* Hot path: the previous row's profile. */
	if (cache->last_by_name != NULL && es_profile_named(cache->last_by_name, name, len))
		return cache->last_by_name;
	foreach(lc, cache->by_name)
		if (es_profile_named(lfirst(lc), name, len))
			return cache->last_by_name = lfirst(lc);

	cname = pnstrdup(name, len);
	if (len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("scoring profile \"%s\" does not exist", cname)));
	/* Fully qualified, operator included: SPI resolves names with the caller's search_path. */
	if (!es_read_profile("engagement.scoring_profiles WHERE name OPERATOR(pg_catalog.=) $1", TEXTOID,
						 CStringGetTextDatum(cname), psprintf("\"%s\"", cname), &found))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("scoring profile \"%s\" does not exist", cname),
				 errhint("The profiles are the rows of engagement.scoring_profiles.")));
	entry = es_intern_profile(fcinfo, cache, &found);
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	cache->by_name = lappend(cache->by_name, (void *) entry);
	MemoryContextSwitchTo(old);
	return cache->last_by_name = entry;
}

/*
 * jsonb_to_record($1) AS r(<profile_columns with their types>): only the model's keys are read,
 * so the other columns of a profile row (its events relation, say) need not exist where it is
 * read.
 */
static const char *
es_document_source(void)
{
	static char *source = NULL;

	if (source == NULL)
	{
		StringInfoData buf;
		char	   *columns = pstrdup(profile_columns);
		char	   *save = NULL;
		char	   *column;
		int			i = 0;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "pg_catalog.jsonb_to_record($1) AS r(");
		for (column = strtok_r(columns, ", ", &save); column != NULL; column = strtok_r(NULL, ", ", &save), i++)
			appendStringInfo(&buf, "%s%s %s", i > 0 ? ", " : "", column,
							 i < ES_PROFILE_VALUES ? "pg_catalog.float8" : "pg_catalog.text");
		appendStringInfoChar(&buf, ')');
		source = MemoryContextStrdup(TopMemoryContext, buf.data);
	}
	return source;
}

/*
 * A profile given as a document (to_jsonb of a scoring_profiles row): every parameter travels
 * with the query, so a server that scores it (a postgres_fdw shard) needs no copy of the
 * profiles table.
 */
static const NamedProfile *
es_profile_from_document(FunctionCallInfo fcinfo, Jsonb *doc)
{
	ProfileCache *cache = es_cache(fcinfo);
	NamedProfile found;
	int			i;
	int			slot;

	for (i = 0; i < lengthof(cache->documents); i++)
		if (cache->documents[i].doc != NULL && VARSIZE(doc) == VARSIZE(cache->documents[i].doc) &&
			memcmp(doc, cache->documents[i].doc, VARSIZE(doc)) == 0)
			return cache->documents[i].profile;

	if (!JB_ROOT_IS_OBJECT(doc) || JB_ROOT_IS_SCALAR(doc))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a scoring profile document must be a JSON object (to_jsonb of an engagement.scoring_profiles row)")));
	(void) es_read_profile(es_document_source(), JSONBOID, PointerGetDatum(doc), "document", &found);
	slot = cache->next_document;
	cache->next_document = (slot + 1) % lengthof(cache->documents);
	if (cache->documents[slot].doc != NULL)
		pfree(cache->documents[slot].doc);
	cache->documents[slot].doc = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, VARSIZE(doc));
	memcpy(cache->documents[slot].doc, doc, VARSIZE(doc));
	cache->documents[slot].profile = es_intern_profile(fcinfo, cache, &found);
	return cache->documents[slot].profile;
}

/* Maps engagement.event_type's OIDs to kernel event types (once per query). */
static int
es_event_type_of(FunctionCallInfo fcinfo, Oid value)
{
	ProfileCache *cache = es_cache(fcinfo);
	int			t;

	if (!OidIsValid(cache->enum_type))
	{
		Oid			enum_type = get_fn_expr_argtype(fcinfo->flinfo, 1);

		if (!OidIsValid(enum_type))
			elog(ERROR, "could not determine the event type's data type");
		for (t = 0; t < ES_EVENT_TYPES; t++)
		{
			HeapTuple	tup = SearchSysCache2(ENUMTYPOIDNAME, ObjectIdGetDatum(enum_type),
											  CStringGetDatum(es_event_type_name(t)));

			if (!HeapTupleIsValid(tup))
				elog(ERROR, "event type label \"%s\" is missing", es_event_type_name(t));
			cache->enum_oids[t] = ((Form_pg_enum) GETSTRUCT(tup))->oid;
			ReleaseSysCache(tup);
		}
		cache->enum_type = enum_type;
	}
	for (t = 0; t < ES_EVENT_TYPES; t++)
		if (cache->enum_oids[t] == value)
			return t;
	elog(ERROR, "unknown event type OID %u", value);
	return -1;					/* keep the compiler quiet */
}

/* ---------------------------------------------------------------------------------------------
 * score_events / explain_events
 * -------------------------------------------------------------------------------------------*/

typedef struct ScoreState
{
	es_accum	acc;
	NamedProfile profile;		/* by value: the final function scores with these, wherever it runs */
	const NamedProfile *resolved;	/* the cache entry copied into profile (NULL in a combined or
									 * deserialized state): rows of the same entry skip comparing */
	int32	   *day_keys;		/* in the aggregate context */
	int32		ndays;
	int32		capacity;
	int32		compacted;		/* length of the last compaction: when to compact again */
} ScoreState;

static ScoreState *
score_state_new(MemoryContext aggcontext, int64 as_of, const NamedProfile *profile, int capacity)
{
	ScoreState *st = MemoryContextAllocZero(aggcontext, sizeof(ScoreState));

	es_accum_init(&st->acc, as_of);
	st->profile = *profile;
	st->capacity = Max(capacity, 8);
	st->day_keys = MemoryContextAlloc(aggcontext, st->capacity * sizeof(int32));
	return st;
}

static void
score_state_compact(ScoreState *st)
{
	st->ndays = (int32) es_compact_day_keys(st->day_keys, (size_t) st->ndays);
	st->compacted = st->ndays;
}

/* Makes room for extra more keys: compact when duplicates may have piled up, else grow. */
static void
score_state_reserve(ScoreState *st, int32 extra)
{
	if (st->ndays + extra <= st->capacity)
		return;
	if (st->ndays > 2 * st->compacted)
		score_state_compact(st);
	if (st->ndays + extra > st->capacity)
	{
		int64		want = Max((int64) st->capacity * 2, (int64) st->ndays + extra);

		if (want > (int64) (MaxAllocSize / sizeof(int32)))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many engagement days in one group")));
		st->day_keys = repalloc(st->day_keys, want * sizeof(int32));
		st->capacity = (int32) want;
	}
}

/* Adds an engagement-day key.  Events often come in time order: a repeat of the last key is
 * dropped at once; other duplicates go at the next compaction. */
static inline void
score_state_add_day(ScoreState *st, int32 key)
{
	if (st->ndays == 0 || st->day_keys[st->ndays - 1] != key)
	{
		score_state_reserve(st, 1);
		st->day_keys[st->ndays++] = key;
	}
}

/*
 * Every row and partial state of a group must have the same as_of and profile, by name and
 * values.  profile is a cache entry (a row's) or another state's copy; the entry the state was
 * made from is the same profile without comparing.
 */
static void
score_state_check_same(const ScoreState *st, int64 as_of, const NamedProfile *profile)
{
	if (st->acc.as_of != as_of)
	{
		/* timestamptz_to_str returns a static buffer: copy one of the two */
		char	   *got = pstrdup(timestamptz_to_str(as_of));

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of must be the same for every row of a group"),
				 errdetail("Got %s after %s.", got, timestamptz_to_str(st->acc.as_of))));
	}
	if (st->resolved == profile)
		return;
	if (strcmp(st->profile.name, profile->name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the profile must be the same for every row of a group"),
				 errdetail("Got \"%s\" after \"%s\".", profile->name, st->profile.name)));
	if (memcmp(&st->profile.values, &profile->values, sizeof(es_profile)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the profile must be the same for every row of a group"),
				 errdetail("Profile \"%s\" came with different parameters.", profile->name)));
}

/* Adds a row's event to its group's state (made by the first row); profile is a cache entry. */
static ScoreState *
score_state_add_event(ScoreState *st, MemoryContext aggcontext, int64 as_of, const NamedProfile *profile,
					  int type, int64 occurred_at, double value)
{
	int32		key;

	if (st == NULL)
	{
		st = score_state_new(aggcontext, as_of, profile, 16);
		st->resolved = profile;
	}
	else
		score_state_check_same(st, as_of, profile);
	if (es_accumulate(&st->acc, &st->profile.values, type, occurred_at, value, &key))
		score_state_add_day(st, key);
	return st;
}

PG_FUNCTION_INFO_V1(es_score_events_transfn);
Datum
es_score_events_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = es_aggcontext(fcinfo, "score_events");
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	bool		has_profile_arg = PG_NARGS() >= 6;
	const NamedProfile *profile;
	int64		occurred_at,
				as_of;
	int			type;
	double		value = 0;

	/*
	 * Like a strict aggregate, rows with a NULL argument are skipped (the value may be NULL).
	 * Before the first row the state is SQL NULL, never a NULL pointer: a worker whose rows were
	 * all skipped would otherwise hand one to the (strict) serialize function.
	 */
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4) || (has_profile_arg && PG_ARGISNULL(5)))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}

	as_of = es_finite_timestamp(PG_GETARG_DATUM(4), "as_of");
	occurred_at = es_finite_timestamp(PG_GETARG_DATUM(2), "occurred_at");
	if (!has_profile_arg)
		profile = es_profile_by_name(fcinfo, "default", strlen("default"));
	else if (get_fn_expr_argtype(fcinfo->flinfo, 5) == JSONBOID)
		profile = es_profile_from_document(fcinfo, PG_GETARG_JSONB_P(5));
	else
	{
		text	   *name = PG_GETARG_TEXT_PP(5);

		profile = es_profile_by_name(fcinfo, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	}
	type = es_event_type_of(fcinfo, PG_GETARG_OID(1));

	if (type == ES_CONVERTED && !PG_ARGISNULL(3))
	{
		Numeric		n = PG_GETARG_NUMERIC(3);

		if (numeric_is_nan(n) || numeric_is_inf(n))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("conversion_value must be a finite number")));
		value = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(n)));
		if (value < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("conversion_value must not be negative, got %g", value)));
	}
	PG_RETURN_POINTER(score_state_add_event(st, aggcontext, as_of, profile, type, occurred_at, value));
}

PG_FUNCTION_INFO_V1(es_score_events_combinefn);
Datum
es_score_events_combinefn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = es_aggcontext(fcinfo, "score_events combine");
	ScoreState *a = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	ScoreState *b = PG_ARGISNULL(1) ? NULL : (ScoreState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		PG_RETURN_POINTER(a);
	if (a == NULL)
	{
		/* Copy b into the aggregate context: it may live elsewhere. */
		a = score_state_new(aggcontext, b->acc.as_of, &b->profile, b->ndays);
		a->acc = b->acc;
		memcpy(a->day_keys, b->day_keys, b->ndays * sizeof(int32));
		a->ndays = b->ndays;
		a->compacted = b->compacted;
		PG_RETURN_POINTER(a);
	}
	score_state_check_same(a, b->acc.as_of, &b->profile);
	es_merge(&a->acc, &b->acc);
	score_state_reserve(a, b->ndays);
	memcpy(a->day_keys + a->ndays, b->day_keys, b->ndays * sizeof(int32));
	a->ndays += b->ndays;
	PG_RETURN_POINTER(a);
}

/*
 * Serialized form: format byte, the accumulator's fields, the profile's name and values, the
 * day keys.  A serialized state only passes between the processes of one query, so there is one
 * format: the deserialize function rejects any other.
 */
#define SCORE_STATE_FORMAT 3

static void
send_sum(StringInfo buf, const es_sum *s)
{
	pq_sendfloat8(buf, s->sum);
	pq_sendfloat8(buf, s->compensation);
}

static void
recv_sum(StringInfo buf, es_sum *s)
{
	s->sum = pq_getmsgfloat8(buf);
	s->compensation = pq_getmsgfloat8(buf);
}

PG_FUNCTION_INFO_V1(es_score_events_serialfn);
Datum
es_score_events_serialfn(PG_FUNCTION_ARGS)
{
	ScoreState *st = (ScoreState *) PG_GETARG_POINTER(0);
	const double *values = (const double *) &st->profile.values;
	int32		namelen = (int32) strlen(st->profile.name);
	StringInfoData buf;
	int			i;

	(void) es_aggcontext(fcinfo, "score_events serialize");
	score_state_compact(st);

	pq_begintypsend(&buf);
	pq_sendbyte(&buf, SCORE_STATE_FORMAT);
	pq_sendint64(&buf, st->acc.as_of);
	pq_sendint64(&buf, st->acc.event_count);
	pq_sendint64(&buf, st->acc.engaging_count);
	pq_sendint64(&buf, st->acc.first_event_at);
	pq_sendint64(&buf, st->acc.last_engaged_at);
	pq_sendint64(&buf, st->acc.window_event_count);
	pq_sendint64(&buf, st->acc.window_oldest_at);
	for (i = 0; i < ES_EVENT_TYPES; i++)
		pq_sendint64(&buf, st->acc.window_type_count[i]);
	send_sum(&buf, &st->acc.window_value);
	send_sum(&buf, &st->acc.decay_raw);
	send_sum(&buf, &st->acc.conversion_total);
	pq_sendint32(&buf, st->acc.opted_out);
	pq_sendint32(&buf, st->acc.ignored_future);
	/* the name as raw bytes: pq_sendstring would convert it to the client encoding */
	pq_sendint32(&buf, namelen);
	pq_sendbytes(&buf, st->profile.name, namelen);
	for (i = 0; i < ES_PROFILE_VALUES; i++)
		pq_sendfloat8(&buf, values[i]);
	pq_sendint32(&buf, st->ndays);
	for (i = 0; i < st->ndays; i++)
		pq_sendint32(&buf, st->day_keys[i]);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(es_score_events_deserialfn);
Datum
es_score_events_deserialfn(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	es_accum	acc;
	NamedProfile profile;
	double	   *values = (double *) &profile.values;
	int32		namelen;
	ScoreState *st;
	int32		n;
	int			i;

	buf.data = VARDATA_ANY(raw);
	buf.len = VARSIZE_ANY_EXHDR(raw);
	buf.maxlen = buf.len;
	buf.cursor = 0;

	if (pq_getmsgbyte(&buf) != SCORE_STATE_FORMAT)
		elog(ERROR, "unknown score_events state format");
	acc.as_of = pq_getmsgint64(&buf);
	acc.event_count = pq_getmsgint64(&buf);
	acc.engaging_count = pq_getmsgint64(&buf);
	acc.first_event_at = pq_getmsgint64(&buf);
	acc.last_engaged_at = pq_getmsgint64(&buf);
	acc.window_event_count = pq_getmsgint64(&buf);
	acc.window_oldest_at = pq_getmsgint64(&buf);
	for (i = 0; i < ES_EVENT_TYPES; i++)
		acc.window_type_count[i] = pq_getmsgint64(&buf);
	recv_sum(&buf, &acc.window_value);
	recv_sum(&buf, &acc.decay_raw);
	recv_sum(&buf, &acc.conversion_total);
	acc.opted_out = pq_getmsgint(&buf, 4);
	acc.ignored_future = pq_getmsgint(&buf, 4);
	namelen = pq_getmsgint(&buf, 4);
	if (namelen < 0 || namelen >= NAMEDATALEN)
		elog(ERROR, "corrupt score_events state");
	memset(&profile, 0, sizeof profile);
	pq_copymsgbytes(&buf, profile.name, namelen);
	for (i = 0; i < ES_PROFILE_VALUES; i++)
		values[i] = pq_getmsgfloat8(&buf);
	n = pq_getmsgint(&buf, 4);
	if (n < 0 || (int64) n * 4 > buf.len - buf.cursor)
		elog(ERROR, "corrupt score_events state");

	/* In the per-input-tuple context: the combine function copies what it keeps. */
	(void) es_aggcontext(fcinfo, "score_events deserialize");
	st = score_state_new(CurrentMemoryContext, acc.as_of, &profile, n);
	st->acc = acc;
	for (i = 0; i < n; i++)
		st->day_keys[i] = pq_getmsgint(&buf, 4);
	st->ndays = n;
	st->compacted = n;
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(st);
}

/* Scores a final state with the profile it carries; false when there is nothing to score. */
static bool
score_state_finalize(ScoreState *st, es_result *result)
{
	char		err[ES_ERRLEN];
	int			status;

	if (st == NULL || st->acc.event_count == 0)
		return false;
	score_state_compact(st);
	status = es_finalize(&st->acc, st->day_keys, (size_t) st->ndays, &st->profile.values, result, err, sizeof err);
	if (status != ES_OK)
		es_raise(status, err);
	return true;
}

/*
 * The conversion total as numeric.  Values of the events table have cents: a sum within
 * rounding of a whole number of cents is that number exactly (and quicker than float8_numeric's
 * printf); anything else goes through float8_numeric.
 */
static Datum
conversion_total_numeric(double total)
{
	double		cents = rint(total * 100.0);

	if (fabs(cents) < 1e15 && fabs(total * 100.0 - cents) <= 1e-6)
		return NumericGetDatum(int64_div_fast_to_numeric((int64) cents, 2));
	return DirectFunctionCall1(float8_numeric, Float8GetDatum(total));
}

/* engagement.score has 18 fields in 1.0 and 19 from 1.1 on (expected_engagements_30d). */
#define SCORE_FIELDS_1_0 18
#define SCORE_FIELDS 19

PG_FUNCTION_INFO_V1(es_score_events_finalfn);
Datum
es_score_events_finalfn(PG_FUNCTION_ARGS)
{
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	const es_profile *profile;
	TupleDesc	result_desc = (TupleDesc) fcinfo->flinfo->fn_extra;
	es_result	r;
	Datum		values[SCORE_FIELDS];
	bool		nulls[SCORE_FIELDS] = {false};
	int			natts;

	(void) es_aggcontext(fcinfo, "score_events final");
	if (!score_state_finalize(st, &r))
		PG_RETURN_NULL();
	profile = &st->profile.values;

	if (result_desc == NULL)
	{
		TupleDesc	desc;
		MemoryContext old;

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "score_events must return a composite type");
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		result_desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = result_desc;	/* kept for the query */
	}
	natts = result_desc->natts;
	if (natts != SCORE_FIELDS && natts != SCORE_FIELDS_1_0)
		elog(ERROR, "engagement.score has %d attributes, expected %d", natts, SCORE_FIELDS);

	values[0] = TimestampTzGetDatum(st->acc.as_of);
	values[1] = CStringGetTextDatum(st->profile.name);
	values[2] = Float8GetDatum(r.composite);
	values[3] = Float8GetDatum(r.recency);
	values[4] = Float8GetDatum(r.frequency);
	values[5] = Float8GetDatum(r.monetary);
	values[6] = Float8GetDatum(r.time_decay);
	values[7] = Float8GetDatum(r.diversity);
	values[8] = Float8GetDatum(r.engagement_probability);
	values[9] = Float8GetDatum(r.conversion_probability);
	values[10] = Float8GetDatum(r.churn_risk);
	values[11] = CStringGetTextDatum(es_segment_name(r.segment));
	values[12] = BoolGetDatum(r.opted_out != 0);
	values[13] = Int64GetDatum(st->acc.event_count);
	values[14] = Int64GetDatum(st->acc.engaging_count);
	values[15] = conversion_total_numeric(es_sum_value(&st->acc.conversion_total));
	values[16] = TimestampTzGetDatum(st->acc.first_event_at);
	if (st->acc.engaging_count > 0)
		values[17] = TimestampTzGetDatum(st->acc.last_engaged_at);
	else
		nulls[17] = true;
	if (natts == SCORE_FIELDS)
	{
		/* MBG/NBD expected engagement days over the profile's horizon, penalised like the
		 * other predictions for an opted-out contact. */
		double		expected;
		char		err[ES_ERRLEN];
		int			status = es_btyd_expected(ES_MODEL_MBGNBD, profile->horizon_days, (double) r.engagement_days,
											  (double) r.t_x_days, (double) r.t_c_days, profile->model_r,
											  profile->model_alpha, profile->model_a, profile->model_b,
											  &expected, err, sizeof err);

		if (status != ES_OK)
			es_raise(status, err);
		values[18] = Float8GetDatum(r.opted_out ? expected * (1.0 - profile->opt_out_penalty) : expected);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}

PG_FUNCTION_INFO_V1(es_explain_events_finalfn);
Datum
es_explain_events_finalfn(PG_FUNCTION_ARGS)
{
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	es_result	r;
	char		err[ES_ERRLEN];
	char	   *text_c = NULL;
	text	   *result;
	int			status;

	(void) es_aggcontext(fcinfo, "explain_events final");
	if (!score_state_finalize(st, &r))
		PG_RETURN_NULL();

	status = es_explain(&r, &st->profile.values, &text_c, err, sizeof err);
	if (status != ES_OK)
		es_raise(status, err);
	/* The kernel's string is malloc()ed: copy it, free it, then return. */
	PG_TRY();
	{
		result = cstring_to_text(text_c);
	}
	PG_FINALLY();
	{
		free(text_c);
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(result);
}

/* ---------------------------------------------------------------------------------------------
 * Transition states with a text form (engagement.decay_state, engagement.btyd_fit_state).
 *
 * Citus splits a global aggregate into worker partials and a coordinator combine only when the
 * state type is not internal and survives its text output and input: so these states are
 * varlena types.  Doubles print in their shortest exact form (never NaN: the states refuse it),
 * so text -> state -> text is the identity and the state bits round-trip exactly.  Inside an
 * aggregate, transition and combine functions update the state in place (as float8_accum does);
 * only growth returns a new value, which the executor then copies into the aggregate context.
 * -------------------------------------------------------------------------------------------*/

static void
append_float8(StringInfo buf, double v)
{
	char		digits[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v, digits);
	appendStringInfoString(buf, digits);
}

/* A cursor over a state's text form; every error is 22P02 and quotes the whole input. */
typedef struct StateParser
{
	const char *type;
	char	   *input;
	char	   *pos;
} StateParser;

static void pg_attribute_noreturn()
state_syntax_error(StateParser *sp, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type %s: \"%s\"", sp->type, sp->input),
			 errdetail("%s at character %d.", why, (int) (sp->pos - sp->input) + 1)));
}

static void
state_skip_spaces(StateParser *sp)
{
	while (*sp->pos == ' ' || *sp->pos == '\t' || *sp->pos == '\n' || *sp->pos == '\r')
		sp->pos++;
}

static bool
state_accept(StateParser *sp, char c)
{
	state_skip_spaces(sp);
	if (*sp->pos != c)
		return false;
	sp->pos++;
	return true;
}

static void
state_expect(StateParser *sp, char c)
{
	if (!state_accept(sp, c))
		state_syntax_error(sp, psprintf("expected \"%c\"", c));
}

static double
state_float8(StateParser *sp)
{
	double		v;

	state_skip_spaces(sp);
	if (*sp->pos == '\0' || strchr(",;()[]", *sp->pos) != NULL)
		state_syntax_error(sp, "expected a number");
	v = float8in_internal(sp->pos, &sp->pos, sp->type, sp->input);
	if (isnan(v))
		state_syntax_error(sp, "NaN is not a valid state value");
	return v;
}

static int64
state_int64(StateParser *sp)
{
	char	   *end;
	int64		v;

	state_skip_spaces(sp);
	errno = 0;
	v = strtoi64(sp->pos, &end, 10);
	if (end == sp->pos || errno != 0)
		state_syntax_error(sp, "expected a 64-bit integer");
	sp->pos = end;
	return v;
}

static void
state_end(StateParser *sp)
{
	state_skip_spaces(sp);
	if (*sp->pos != '\0')
		state_syntax_error(sp, "unexpected text after the state");
}

/* ---------------------------------------------------------------------------------------------
 * time_decay(weight, occurred_at, as_of, half_life_days), state engagement.decay_state:
 * text form (sum, compensation, as_of in microseconds since 2000-01-01, half_life_days, rows).
 * -------------------------------------------------------------------------------------------*/

typedef struct DecayState
{
	int32		vl_len_;		/* varlena header (always 4 bytes here: see decay_state_arg) */
	int32		reserved;
	es_sum		sum;
	int64		as_of;
	double		half_life_days;
	int64		rows;
} DecayState;

static DecayState *
decay_state_new(void)
{
	DecayState *st = palloc0(sizeof(DecayState));

	SET_VARSIZE(st, sizeof(DecayState));
	return st;
}

/* The state argument, detoasted (a copy if it came packed, e.g. from a tuple) and checked. */
static DecayState *
decay_state_arg(FunctionCallInfo fcinfo, int argno)
{
	DecayState *st;

	if (PG_ARGISNULL(argno))
		return NULL;
	st = (DecayState *) PG_DETOAST_DATUM(PG_GETARG_DATUM(argno));
	if (VARSIZE(st) != sizeof(DecayState))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("corrupt decay_state: %u bytes, expected %zu", (unsigned) VARSIZE(st), sizeof(DecayState))));
	return st;
}

static void
decay_state_check_same(DecayState *st, int64 as_of, double half_life)
{
	if (st->as_of != as_of || st->half_life_days != half_life)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of and half_life_days must be the same for every row of a group")));
}

/* A sum that overflowed carries infinities and then NaN: checked wherever a state leaves a
 * transition (combine, final, text output), not per row. */
static void
decay_state_check_finite(const DecayState *st)
{
	if (!isfinite(st->sum.sum) || !isfinite(st->sum.compensation))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("time_decay is out of range for type double precision")));
}

PG_FUNCTION_INFO_V1(es_decay_transfn);
Datum
es_decay_transfn(PG_FUNCTION_ARGS)
{
	DecayState *st = decay_state_arg(fcinfo, 0);
	double		weight,
				half_life;
	int64		occurred_at,
				as_of;

	(void) es_aggcontext(fcinfo, "time_decay");	/* updates its state in place */
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}

	weight = PG_GETARG_FLOAT8(1);
	occurred_at = es_finite_timestamp(PG_GETARG_DATUM(2), "occurred_at");
	as_of = es_finite_timestamp(PG_GETARG_DATUM(3), "as_of");
	half_life = PG_GETARG_FLOAT8(4);
	if (!isfinite(weight))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weight must be a finite number")));
	if (!isfinite(half_life) || half_life <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("half_life_days must be a finite number greater than 0, not %g", half_life)));

	if (st == NULL)
	{
		st = decay_state_new();	/* the executor copies a new state */
		st->as_of = as_of;
		st->half_life_days = half_life;
	}
	else
		decay_state_check_same(st, as_of, half_life);

	st->rows++;
	if (occurred_at <= as_of)
		es_sum_add(&st->sum, es_decayed_weight(weight, occurred_at, as_of, half_life));
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(es_decay_combinefn);
Datum
es_decay_combinefn(PG_FUNCTION_ARGS)
{
	DecayState *a = decay_state_arg(fcinfo, 0);
	DecayState *b = decay_state_arg(fcinfo, 1);

	(void) es_aggcontext(fcinfo, "time_decay combine");	/* updates a in place */
	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
	{
		a = decay_state_new();
		memcpy(a, b, sizeof(DecayState));
		PG_RETURN_POINTER(a);
	}
	decay_state_check_same(a, b->as_of, b->half_life_days);
	es_sum_merge(&a->sum, &b->sum);
	decay_state_check_finite(a);
	a->rows += b->rows;
	PG_RETURN_POINTER(a);
}

PG_FUNCTION_INFO_V1(es_decay_finalfn);
Datum
es_decay_finalfn(PG_FUNCTION_ARGS)
{
	DecayState *st = decay_state_arg(fcinfo, 0);

	if (st == NULL || st->rows == 0)
		PG_RETURN_NULL();
	decay_state_check_finite(st);
	PG_RETURN_FLOAT8(es_sum_value(&st->sum));
}

PG_FUNCTION_INFO_V1(es_decay_state_out);
Datum
es_decay_state_out(PG_FUNCTION_ARGS)
{
	DecayState *st = decay_state_arg(fcinfo, 0);
	StringInfoData buf;

	decay_state_check_finite(st);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '(');
	append_float8(&buf, st->sum.sum);
	appendStringInfoChar(&buf, ',');
	append_float8(&buf, st->sum.compensation);
	appendStringInfo(&buf, ",%lld,", (long long) st->as_of);
	append_float8(&buf, st->half_life_days);
	appendStringInfo(&buf, ",%lld)", (long long) st->rows);
	PG_RETURN_CSTRING(buf.data);
}

PG_FUNCTION_INFO_V1(es_decay_state_in);
Datum
es_decay_state_in(PG_FUNCTION_ARGS)
{
	StateParser sp = {"engagement.decay_state", PG_GETARG_CSTRING(0), PG_GETARG_CSTRING(0)};
	DecayState *st = decay_state_new();

	state_expect(&sp, '(');
	st->sum.sum = state_float8(&sp);
	state_expect(&sp, ',');
	st->sum.compensation = state_float8(&sp);
	state_expect(&sp, ',');
	st->as_of = state_int64(&sp);
	state_expect(&sp, ',');
	st->half_life_days = state_float8(&sp);
	state_expect(&sp, ',');
	st->rows = state_int64(&sp);
	state_expect(&sp, ')');
	state_end(&sp);
	if (!isfinite(st->sum.sum) || !isfinite(st->sum.compensation) || TIMESTAMP_NOT_FINITE(st->as_of) ||
		!isfinite(st->half_life_days) || st->half_life_days <= 0 || st->rows < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s: \"%s\"", sp.type, sp.input),
				 errdetail("The sums must be finite, as_of a finite timestamp, half_life_days greater than 0 and rows not negative.")));
	PG_RETURN_POINTER(st);
}

/* ---------------------------------------------------------------------------------------------
 * Score distributions: the sorted composites of a profile's scores, packed as float8s in a bytea
 * stored uncompressed out of line (STORAGE EXTERNAL), so a percentile is a binary search that
 * fetches a handful of TOAST slices instead of the whole array or the scores table.
 * -------------------------------------------------------------------------------------------*/

static int
float8_cmp(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* _pack_sorted(float8[]): the array's values, sorted, as a bytea of native float8s. */
PG_FUNCTION_INFO_V1(es_pack_sorted);
Datum
es_pack_sorted(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int			n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	bytea	   *out;
	double	   *v;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID)
		elog(ERROR, "_pack_sorted expects float8[]");
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a score distribution cannot hold NULL")));
	{
		const double *in = (const double *) ARR_DATA_PTR(arr);
		int			i;

		for (i = 0; i < n; i++)
			if (isnan(in[i]))	/* qsort needs a total order */
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a score distribution cannot hold NaN")));
	}
	out = palloc(VARHDRSZ + (Size) n * sizeof(double));
	SET_VARSIZE(out, VARHDRSZ + (Size) n * sizeof(double));
	v = (double *) VARDATA(out);
	if (n > 0)
		memcpy(v, ARR_DATA_PTR(arr), (Size) n * sizeof(double));
	qsort(v, n, sizeof(double), float8_cmp);
	PG_RETURN_BYTEA_P(out);
}

/* A distribution detoasted once per query, for _count_below over many rows. */
typedef struct DistributionCache
{
	Oid			toastrelid;
	Oid			valueid;
	int64		n;
	double	   *values;
} DistributionCache;

/*
 * _count_below(sorted bytea, score): how many values of the distribution are < score.
 * One call (score_percentile) binary-searches through TOAST slices; many calls over the same
 * stored value (a refresh's percentile UPDATE) detoast it once and search memory.
 */
PG_FUNCTION_INFO_V1(es_count_below);
Datum
es_count_below(PG_FUNCTION_ARGS)
{
	Datum		packed = PG_GETARG_DATUM(0);
	double		score = PG_GETARG_FLOAT8(1);
	struct varlena *raw = (struct varlena *) DatumGetPointer(packed);
	int64		n = (int64) ((toast_raw_datum_size(packed) - VARHDRSZ) / sizeof(double));
	int64		lo = 0,
				hi = n;
	const double *whole = NULL;
	bool		sliceable = false;
	DistributionCache *cache = (DistributionCache *) fcinfo->flinfo->fn_extra;

	if (isnan(score))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("score must be a number, not NaN")));
	if (VARATT_IS_EXTERNAL_ONDISK(raw))
	{
		struct varatt_external toast_pointer;

		VARATT_EXTERNAL_GET_POINTER(toast_pointer, raw);
		if (cache != NULL && cache->toastrelid == toast_pointer.va_toastrelid &&
			cache->valueid == toast_pointer.va_valueid)
			whole = cache->values;	/* seen before in this query */
		else if (cache != NULL && !VARATT_EXTERNAL_IS_COMPRESSED(toast_pointer))
		{
			/* The second call on a new value: keep a detoasted copy for the rest. */
			bytea	   *copy = DatumGetByteaPCopy(packed);

			if (cache->values != NULL)
				pfree(cache->values);
			cache->values = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, (Size) n * sizeof(double));
			memcpy(cache->values, VARDATA_ANY(copy), (Size) n * sizeof(double));
			pfree(copy);
			cache->toastrelid = toast_pointer.va_toastrelid;
			cache->valueid = toast_pointer.va_valueid;
			cache->n = n;
			whole = cache->values;
		}
		else
		{
			sliceable = !VARATT_EXTERNAL_IS_COMPRESSED(toast_pointer);
			if (cache == NULL)
				fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(DistributionCache));
		}
	}
	if (whole == NULL && !sliceable)
		whole = (const double *) VARDATA_ANY(PG_DETOAST_DATUM_PACKED(packed));

	while (lo < hi)
	{
		int64		mid = lo + (hi - lo) / 2;
		double		v;

		if (whole != NULL)
			memcpy(&v, whole + mid, sizeof v);
		else
		{
			bytea	   *slice = DatumGetByteaPSlice(packed, (int32) (mid * sizeof(double)), sizeof(double));

			memcpy(&v, VARDATA_ANY(slice), sizeof v);
			pfree(slice);
		}
		if (v < score)
			lo = mid + 1;
		else
			hi = mid;
	}
	PG_RETURN_INT64(lo);
}

/* ---------------------------------------------------------------------------------------------
 * BG/NBD-family models (btyd_kernel.h): per-contact summaries, fitting aggregates, scalars.
 * -------------------------------------------------------------------------------------------*/

/*
 * btyd_summary(event_type, occurred_at, as_of): a contact's (x, t_x, t) in days as
 * SCORING_MODEL.md defines them (engagement days, birth at the first event of any type).
 * It shares score_events' state, combine and (de)serialize functions; only x, t_x and Tc are
 * read, so the built-in default parameters stand in for a profile.
 */
PG_FUNCTION_INFO_V1(es_btyd_summary_transfn);
Datum
es_btyd_summary_transfn(PG_FUNCTION_ARGS)
{
	static NamedProfile builtin_default;	/* lives as long as the process, like a cache entry */
	MemoryContext aggcontext = es_aggcontext(fcinfo, "btyd_summary");
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	int64		occurred_at,
				as_of;
	int			type;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
	{
		if (st == NULL)
			PG_RETURN_NULL();	/* SQL NULL, not a NULL pointer (see score_events) */
		PG_RETURN_POINTER(st);
	}
	if (builtin_default.name[0] == '\0')
	{
		builtin_default.values = es_default_profile();
		strlcpy(builtin_default.name, "default", NAMEDATALEN);
	}
	occurred_at = es_finite_timestamp(PG_GETARG_DATUM(2), "occurred_at");
	as_of = es_finite_timestamp(PG_GETARG_DATUM(3), "as_of");
	type = es_event_type_of(fcinfo, PG_GETARG_OID(1));
	PG_RETURN_POINTER(score_state_add_event(st, aggcontext, as_of, &builtin_default, type, occurred_at, 0));
}

PG_FUNCTION_INFO_V1(es_btyd_summary_finalfn);
Datum
es_btyd_summary_finalfn(PG_FUNCTION_ARGS)
{
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int64		b0;

	(void) es_aggcontext(fcinfo, "btyd_summary final");
	if (st == NULL || st->acc.event_count == 0)
		PG_RETURN_NULL();
	score_state_compact(st);
	b0 = es_day_number(st->acc.first_event_at);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "btyd_summary must return a composite type");
	desc = BlessTupleDesc(desc);
	values[0] = Int32GetDatum(st->ndays);
	values[1] = Float8GetDatum(st->ndays > 0 ? (double) ((st->day_keys[st->ndays - 1] >> 1) - b0) : 0.0);
	values[2] = Float8GetDatum((double) (es_day_number(st->acc.as_of) - b0));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * Fitting state, engagement.btyd_fit_state: the customer summaries seen so far, collapsed by
 * (x, t_x, T) whenever the array fills up.  The varlena's size covers the whole capacity, so a
 * copy keeps its room; text form [(x,t_x,T,weight),...], collapsed.
 */
typedef struct FitState
{
	int32		vl_len_;		/* varlena header, always 4 bytes here (see fit_state_arg) */
	int32		reserved;
	int64		nrows;
	int64		collapsed;		/* length after the last collapse */
	es_btyd_row rows[FLEXIBLE_ARRAY_MEMBER];
} FitState;

#define FIT_STATE_SIZE(capacity) (offsetof(FitState, rows) + (capacity) * sizeof(es_btyd_row))
#define FIT_STATE_CAPACITY(st) ((int64) ((VARSIZE(st) - offsetof(FitState, rows)) / sizeof(es_btyd_row)))
#define FIT_STATE_MAX_ROWS ((int64) ((MaxAllocSize - offsetof(FitState, rows)) / sizeof(es_btyd_row)))

/* A new state in the current memory (a transition or combine function returning it has the
 * executor copy it into the aggregate context), holding a copy of rows[0..n). */
static FitState *
fit_state_new(int64 capacity, const es_btyd_row *rows, int64 n)
{
	FitState   *st;

	capacity = Max(capacity, Max(n, 64));
	if (capacity > FIT_STATE_MAX_ROWS)
	{
		if (n > FIT_STATE_MAX_ROWS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many distinct customer summaries to fit: more than " INT64_FORMAT,
							FIT_STATE_MAX_ROWS)));
		capacity = FIT_STATE_MAX_ROWS;
	}
	st = palloc(FIT_STATE_SIZE(capacity));
	SET_VARSIZE(st, FIT_STATE_SIZE(capacity));
	st->reserved = 0;
	st->nrows = st->collapsed = n;
	if (n > 0)
		memcpy(st->rows, rows, n * sizeof(es_btyd_row));
	return st;
}

static FitState *
fit_state_arg(FunctionCallInfo fcinfo, int argno)
{
	FitState   *st;

	if (PG_ARGISNULL(argno))
		return NULL;
	st = (FitState *) PG_DETOAST_DATUM(PG_GETARG_DATUM(argno));
	if (VARSIZE(st) < offsetof(FitState, rows) || st->nrows < 0 || st->nrows > FIT_STATE_CAPACITY(st))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("corrupt btyd_fit_state")));
	return st;
}

/* Room for extra more rows: collapse when duplicates may have piled up, else a bigger copy. */
static FitState *
fit_state_reserve(FitState *st, int64 extra)
{
	if (st->nrows + extra <= FIT_STATE_CAPACITY(st))
		return st;
	if (st->nrows > 2 * st->collapsed)
	{
		st->nrows = (int64) es_btyd_collapse(st->rows, (size_t) st->nrows);
		st->collapsed = st->nrows;
	}
	if (st->nrows + extra <= FIT_STATE_CAPACITY(st))
		return st;
	if (st->nrows + extra > FIT_STATE_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many distinct customer summaries to fit: more than " INT64_FORMAT,
						FIT_STATE_MAX_ROWS)));
	return fit_state_new(Max(FIT_STATE_CAPACITY(st) * 2, st->nrows + extra), st->rows, st->nrows);
}

/* fit_*(x integer, t_x float8, t float8 [, weight float8]) transition. */
PG_FUNCTION_INFO_V1(es_btyd_fit_transfn);
Datum
es_btyd_fit_transfn(PG_FUNCTION_ARGS)
{
	FitState   *st = fit_state_arg(fcinfo, 0);
	es_btyd_row row;
	char		err[ES_ERRLEN];

	(void) es_aggcontext(fcinfo, "fit");	/* updates its state in place */
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || (PG_NARGS() > 4 && PG_ARGISNULL(4)))
	{
		if (st == NULL)
			PG_RETURN_NULL();	/* SQL NULL, not a NULL pointer (see score_events) */
		PG_RETURN_POINTER(st);
	}
	row.x = (double) PG_GETARG_INT32(1);
	row.t_x = PG_GETARG_FLOAT8(2);
	row.T = PG_GETARG_FLOAT8(3);
	row.weight = PG_NARGS() > 4 ? PG_GETARG_FLOAT8(4) : 1.0;
	if (es_btyd_validate_rows(&row, 1, err, sizeof err) != ES_OK)
	{
		/* The kernel names the row by index ("row 0: ..."): here there is only this one. */
		const char *why = strncmp(err, "row ", 4) == 0 && strstr(err, ": ") ? strstr(err, ": ") + 2 : err;

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x %d, t_x %g, t %g, weight %g): %s",
						PG_GETARG_INT32(1), row.t_x, row.T, row.weight, why)));
	}
	st = st == NULL ? fit_state_new(64, NULL, 0) : fit_state_reserve(st, 1);
	st->rows[st->nrows++] = row;
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(es_btyd_fit_combinefn);
Datum
es_btyd_fit_combinefn(PG_FUNCTION_ARGS)
{
	FitState   *a = fit_state_arg(fcinfo, 0);
	FitState   *b = fit_state_arg(fcinfo, 1);

	(void) es_aggcontext(fcinfo, "fit combine");	/* updates a in place */
	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		PG_RETURN_POINTER(fit_state_new(b->nrows, b->rows, b->nrows));
	a = fit_state_reserve(a, b->nrows);
	memcpy(a->rows + a->nrows, b->rows, b->nrows * sizeof(es_btyd_row));
	a->nrows += b->nrows;
	PG_RETURN_POINTER(a);
}

PG_FUNCTION_INFO_V1(es_btyd_fit_state_out);
Datum
es_btyd_fit_state_out(PG_FUNCTION_ARGS)
{
	FitState   *st = fit_state_arg(fcinfo, 0);
	es_btyd_row *rows = palloc(Max(st->nrows, 1) * sizeof(es_btyd_row));
	int64		n;
	int64		i;
	StringInfoData buf;

	/* Collapsed, on a copy (the argument may be read-only): equal states print the same. */
	memcpy(rows, st->rows, st->nrows * sizeof(es_btyd_row));
	n = (int64) es_btyd_collapse(rows, (size_t) st->nrows);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < n; i++)
	{
		appendStringInfoString(&buf, i == 0 ? "(" : ",(");
		append_float8(&buf, rows[i].x);
		appendStringInfoChar(&buf, ',');
		append_float8(&buf, rows[i].t_x);
		appendStringInfoChar(&buf, ',');
		append_float8(&buf, rows[i].T);
		appendStringInfoChar(&buf, ',');
		append_float8(&buf, rows[i].weight);
		appendStringInfoChar(&buf, ')');
	}
	appendStringInfoChar(&buf, ']');
	PG_RETURN_CSTRING(buf.data);
}

PG_FUNCTION_INFO_V1(es_btyd_fit_state_in);
Datum
es_btyd_fit_state_in(PG_FUNCTION_ARGS)
{
	StateParser sp = {"engagement.btyd_fit_state", PG_GETARG_CSTRING(0), PG_GETARG_CSTRING(0)};
	int64		capacity = 64;
	int64		n = 0;
	es_btyd_row *rows = palloc(capacity * sizeof(es_btyd_row));
	char		err[ES_ERRLEN];
	FitState   *st;

	state_expect(&sp, '[');
	if (!state_accept(&sp, ']'))
	{
		do
		{
			if (n == capacity)
			{
				if (capacity >= FIT_STATE_MAX_ROWS)
					state_syntax_error(&sp, "too many rows");
				capacity = Min(capacity * 2, FIT_STATE_MAX_ROWS);
				rows = repalloc(rows, capacity * sizeof(es_btyd_row));
			}
			state_expect(&sp, '(');
			rows[n].x = state_float8(&sp);
			state_expect(&sp, ',');
			rows[n].t_x = state_float8(&sp);
			state_expect(&sp, ',');
			rows[n].T = state_float8(&sp);
			state_expect(&sp, ',');
			rows[n].weight = state_float8(&sp);
			state_expect(&sp, ')');
			n++;
		} while (state_accept(&sp, ','));
		state_expect(&sp, ']');
	}
	state_end(&sp);
	if (es_btyd_validate_rows(rows, (size_t) n, err, sizeof err) != ES_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s: \"%s\"", sp.type, sp.input),
				 errdetail("%s", err)));
	st = fit_state_new(n, rows, n);
	pfree(rows);
	PG_RETURN_POINTER(st);
}

static Datum
fit_final(FunctionCallInfo fcinfo, int model)
{
	FitState   *st = fit_state_arg(fcinfo, 0);
	es_btyd_fit fit;
	char		err[ES_ERRLEN] = "";
	int			status;
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {false};

	(void) es_aggcontext(fcinfo, "fit final");
	if (st == NULL || st->nrows == 0)
		PG_RETURN_NULL();
	/* The kernel copies, validates, sorts and collapses: the fit depends only on the rows. */
	status = es_btyd_fit_model(model, st->rows, (size_t) st->nrows, &fit, err, sizeof err);
	if (status != ES_OK)
		es_raise(status, err);
	if (!fit.converged)
		ereport(NOTICE,
				(errmsg("the %s fit did not converge: %s", model == ES_MODEL_MBGNBD ? "MBG/NBD" : "BG/NBD", err)));
	else
	{
		/*
		 * Customers with events but t_x = 0 (all on the birth day) make the likelihood grow without
		 * bound as alpha and r go to 0: a converged fit is then a local maximum.  Say so.
		 */
		double		degenerate = 0;
		int64		i;

		for (i = 0; i < st->nrows; i++)
			if (st->rows[i].x > 0 && st->rows[i].t_x == 0)
				degenerate += st->rows[i].weight;
		if (degenerate > 0)
			ereport(NOTICE,
					(errmsg("the fit is a local maximum: %.0f of %.0f customers have events only at time 0 (x > 0, t_x = 0), "
							"where the likelihood has no global maximum", degenerate, fit.n),
					 errhint("With engagement days, these are contacts that engaged only on the day they were first reached.")));
	}
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "the fit must return a composite type");
	desc = BlessTupleDesc(desc);
	values[0] = Float8GetDatum(fit.r);
	values[1] = Float8GetDatum(fit.alpha);
	values[2] = Float8GetDatum(fit.a);
	values[3] = Float8GetDatum(fit.b);
	values[4] = Float8GetDatum(fit.log_likelihood);
	values[5] = Float8GetDatum(fit.n);
	values[6] = Int32GetDatum(fit.iterations);
	values[7] = BoolGetDatum(fit.converged != 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

PG_FUNCTION_INFO_V1(es_btyd_fit_mbgnbd_finalfn);
Datum
es_btyd_fit_mbgnbd_finalfn(PG_FUNCTION_ARGS)
{
	return fit_final(fcinfo, ES_MODEL_MBGNBD);
}

PG_FUNCTION_INFO_V1(es_btyd_fit_bgnbd_finalfn);
Datum
es_btyd_fit_bgnbd_finalfn(PG_FUNCTION_ARGS)
{
	return fit_final(fcinfo, ES_MODEL_BGNBD);
}

/* 'mbgnbd' or 'bgnbd'. */
static int
es_model_of(text *name)
{
	char	   *s = text_to_cstring(name);

	if (strcmp(s, "mbgnbd") == 0)
		return ES_MODEL_MBGNBD;
	if (strcmp(s, "bgnbd") == 0)
		return ES_MODEL_BGNBD;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown model \"%s\"", s),
			 errhint("The models are 'mbgnbd' and 'bgnbd'.")));
	return -1;
}

/* p_alive(model, x, t_x, t, r, alpha, a, b) */
PG_FUNCTION_INFO_V1(es_p_alive);
Datum
es_p_alive(PG_FUNCTION_ARGS)
{
	int			model = es_model_of(PG_GETARG_TEXT_PP(0));
	double		out;
	char		err[ES_ERRLEN];
	int			status = es_btyd_p_alive(model, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2), PG_GETARG_FLOAT8(3),
										 PG_GETARG_FLOAT8(4), PG_GETARG_FLOAT8(5), PG_GETARG_FLOAT8(6),
										 PG_GETARG_FLOAT8(7), &out, err, sizeof err);

	if (status != ES_OK)
		es_raise(status, err);
	PG_RETURN_FLOAT8(out);
}

/* expected_engagements(model, horizon, x, t_x, t, r, alpha, a, b) */
PG_FUNCTION_INFO_V1(es_expected_engagements);
Datum
es_expected_engagements(PG_FUNCTION_ARGS)
{
	int			model = es_model_of(PG_GETARG_TEXT_PP(0));
	double		out;
	char		err[ES_ERRLEN];
	int			status = es_btyd_expected(model, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2), PG_GETARG_FLOAT8(3),
										  PG_GETARG_FLOAT8(4), PG_GETARG_FLOAT8(5), PG_GETARG_FLOAT8(6),
										  PG_GETARG_FLOAT8(7), PG_GETARG_FLOAT8(8), &out, err, sizeof err);

	if (status != ES_OK)
		es_raise(status, err);
	PG_RETURN_FLOAT8(out);
}

/* prob_no_engagement(model, horizon, x, t_x, t, r, alpha, a, b) */
PG_FUNCTION_INFO_V1(es_prob_no_engagement);
Datum
es_prob_no_engagement(PG_FUNCTION_ARGS)
{
	int			model = es_model_of(PG_GETARG_TEXT_PP(0));
	double		out;
	char		err[ES_ERRLEN];
	int			status = es_btyd_prob_no_event(model, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2), PG_GETARG_FLOAT8(3),
											   PG_GETARG_FLOAT8(4), PG_GETARG_FLOAT8(5), PG_GETARG_FLOAT8(6),
											   PG_GETARG_FLOAT8(7), PG_GETARG_FLOAT8(8), &out, err, sizeof err);

	if (status != ES_OK)
		es_raise(status, err);
	PG_RETURN_FLOAT8(out);
}

/* The float8 values of an array without NULLs, sorted (palloc'd); *n gets their count. */
static double *
sorted_values(ArrayType *arr, int *n)
{
	double	   *v;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID)
		elog(ERROR, "expected float8[]");
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a score distribution cannot hold NULL")));
	*n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	v = palloc(Max(*n, 1) * sizeof(double));
	if (*n > 0)
		memcpy(v, ARR_DATA_PTR(arr), (Size) *n * sizeof(double));
	for (int i = 0; i < *n; i++)
		if (isnan(v[i]))		/* qsort needs a total order */
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a score distribution cannot hold NaN")));
	qsort(v, *n, sizeof(double), float8_cmp);
	return v;
}

/*
 * _merge_distribution(sorted bytea, removed float8[], added float8[]): the distribution with
 * one occurrence of each removed value taken out and the added values merged in, in one pass
 * (an incremental refresh changes a few contacts of many).  A removed value that is not there
 * is an error: the distribution and the scores table disagree.
 */
PG_FUNCTION_INFO_V1(es_merge_distribution);
Datum
es_merge_distribution(PG_FUNCTION_ARGS)
{
	bytea	   *old = PG_GETARG_BYTEA_PP(0);
	int64		nold = VARSIZE_ANY_EXHDR(old) / sizeof(double);
	const double *ov = (const double *) VARDATA_ANY(old);
	int			nrem,
				nadd;
	double	   *rem = sorted_values(PG_GETARG_ARRAYTYPE_P(1), &nrem);
	double	   *add = sorted_values(PG_GETARG_ARRAYTYPE_P(2), &nadd);
	int64		nout = nold - nrem + nadd;
	bytea	   *out;
	double	   *o;
	int64		i = 0,
				k = 0,
				r = 0,
				a = 0;

	if (nout < 0)
		elog(ERROR, "score distribution out of step with the scores: %d removed of " INT64_FORMAT, nrem, nold);
	out = palloc(VARHDRSZ + (Size) nout * sizeof(double));
	SET_VARSIZE(out, VARHDRSZ + (Size) nout * sizeof(double));
	o = (double *) VARDATA(out);
	while (i < nold || a < nadd)
	{
		double		v;

		if (i < nold && (a >= nadd || ov[i] <= add[a]))
		{
			memcpy(&v, ov + i, sizeof v);
			i++;
			/* skip it if it is the next value to remove (both sorted) */
			if (r < nrem && rem[r] < v)
				elog(ERROR, "score distribution out of step with the scores: %g is not in it", rem[r]);
			if (r < nrem && rem[r] == v)
			{
				r++;
				continue;
			}
		}
		else
			v = add[a++];
		if (k >= nout)
			elog(ERROR, "score distribution out of step with the scores");
		o[k++] = v;
	}
	if (r < nrem || k != nout)
		elog(ERROR, "score distribution out of step with the scores: %d of %d removed values not found",
			 nrem - (int) r, nrem);
	PG_RETURN_BYTEA_P(out);
}

/* ---------------------------------------------------------------------------------------------
 * Entry points of 1.0 and 1.1 that 1.2 replaced (time_decay and the fits had internal states).
 * Their install scripts still create them, and an installation not yet updated still calls
 * them: they say what to do instead of misreading a state of the other layout.
 * -------------------------------------------------------------------------------------------*/
#define ES_REPLACED_ENTRY_POINT(fn) \
	PG_FUNCTION_INFO_V1(fn); \
	Datum fn(PG_FUNCTION_ARGS) \
	{ \
		ereport(ERROR, \
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), \
				 errmsg("this engagement_scoring function needs the extension update to 1.2"), \
				 errhint("Run ALTER EXTENSION engagement_scoring UPDATE."))); \
		PG_RETURN_NULL(); \
	}

ES_REPLACED_ENTRY_POINT(es_time_decay_transfn)
ES_REPLACED_ENTRY_POINT(es_time_decay_combinefn)
ES_REPLACED_ENTRY_POINT(es_time_decay_serialfn)
ES_REPLACED_ENTRY_POINT(es_time_decay_deserialfn)
ES_REPLACED_ENTRY_POINT(es_time_decay_finalfn)
ES_REPLACED_ENTRY_POINT(es_fit_transfn)
ES_REPLACED_ENTRY_POINT(es_fit_combinefn)
ES_REPLACED_ENTRY_POINT(es_fit_serialfn)
ES_REPLACED_ENTRY_POINT(es_fit_deserialfn)
ES_REPLACED_ENTRY_POINT(es_fit_mbgnbd_finalfn)
ES_REPLACED_ENTRY_POINT(es_fit_bgnbd_finalfn)
