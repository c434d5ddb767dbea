/*
 * score_events.c: score_events and explain_events (and btyd_summary's state): one contact's
 * events, the rows of a group, accumulated by the kernel under a profile the state carries.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "es_glue.h"

/*
 * A new state's allocation: the state and as many day keys as fill it to 256 bytes, a size
 * class of the aggregate context's allocator (one more key and it takes 512: 50 MB more for a
 * hashed aggregation over 200,000 contacts, and as many more pages to fault in).
 */
#define SCORE_STATE_BYTES 256
#define SCORE_STATE_INLINE_KEYS ((int) ((SCORE_STATE_BYTES - offsetof(ScoreState, inline_keys)) / sizeof(int32)))
StaticAssertDecl(SCORE_STATE_INLINE_KEYS >= 8, "a state holds a few day keys inline");

/* An empty state for profile, an entry of a cache of this query (es_glue.h). */
static ScoreState *
score_state_new(MemoryContext aggcontext, int64 as_of, const NamedProfile *profile)
{
	ScoreState *st = MemoryContextAllocZero(aggcontext, SCORE_STATE_BYTES);

	es_accum_init(&st->acc, as_of);
	st->profile = profile;
	st->day_keys = st->inline_keys;
	st->capacity = SCORE_STATE_INLINE_KEYS;
	st->sorted = true;
	return st;
}

void
es_score_state_compact(ScoreState *st)
{
	if (!st->sorted)
		st->ndays = (int32) es_compact_day_keys(st->day_keys, (size_t) st->ndays);
	st->compacted = st->ndays;
	st->sorted = true;
}

/* Raises 54000 when a group's day keys would not fit in one allocation. */
static void
score_state_check_days(int64 ndays)
{
	if (ndays > (int64) (MaxAllocSize / sizeof(int32)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many engagement days in one group")));
}

/* Makes room for extra more keys: compact when duplicates may have piled up, else grow. */
static void
score_state_reserve(ScoreState *st, MemoryContext aggcontext, int32 extra)
{
	if (st->ndays + extra <= st->capacity)
		return;
	if (!st->sorted && st->ndays > 2 * st->compacted)
		es_score_state_compact(st);
	if (st->ndays + extra > st->capacity)
	{
		int64		want = Max((int64) st->capacity * 2, (int64) st->ndays + extra);

		score_state_check_days(want);
		if (st->day_keys == st->inline_keys)
		{
			st->day_keys = MemoryContextAlloc(aggcontext, want * sizeof(int32));
			memcpy(st->day_keys, st->inline_keys, st->ndays * sizeof(int32));
		}
		else
			st->day_keys = repalloc(st->day_keys, want * sizeof(int32));
		st->capacity = (int32) want;
	}
}

/*
 * Adds b's day keys to a's.  Both compact and overlapping (the usual case: two workers saw the
 * same contact's events): merged, in linear time.  Else appended, still compact when b's days
 * all come after a's, or left for the next compaction.
 */
static void
score_state_add_days(ScoreState *a, MemoryContext aggcontext, const ScoreState *b)
{
	if (b->ndays == 0)
		return;
	if (a->ndays > 0 && a->sorted && b->sorted &&
		es_day_of_key(a->day_keys[a->ndays - 1]) >= es_day_of_key(b->day_keys[0]))
	{
		int64		capacity = (int64) a->ndays + b->ndays;
		int32	   *merged;

		score_state_check_days(capacity);
		merged = MemoryContextAlloc(aggcontext, capacity * sizeof(int32));
		a->ndays = (int32) es_merge_day_keys(a->day_keys, a->ndays, b->day_keys, b->ndays, merged);
		if (a->day_keys != a->inline_keys)
			pfree(a->day_keys);
		a->day_keys = merged;
		a->capacity = (int32) capacity;
		a->compacted = a->ndays;
		return;
	}
	score_state_reserve(a, aggcontext, b->ndays);	/* (may compact a) */
	if (a->ndays == 0)
		a->sorted = b->sorted;
	else if (!b->sorted || es_day_of_key(a->day_keys[a->ndays - 1]) >= es_day_of_key(b->day_keys[0]))
		a->sorted = false;
	memcpy(a->day_keys + a->ndays, b->day_keys, b->ndays * sizeof(int32));
	a->ndays += b->ndays;
}

/*
 * Adds an engagement-day key.  A contact's events usually come in time order: a key of the last
 * key's day joins it (its flags ORed in, as compaction does) and a later day's is appended, so
 * the keys stay compact; an earlier day's leaves them for the next compaction.
 */
static inline void
score_state_add_day(ScoreState *st, MemoryContext aggcontext, int32 key)
{
	if (st->ndays > 0)
	{
		int32	   *last = &st->day_keys[st->ndays - 1];

		if (*last == key)
			return;
		if (st->sorted && es_day_of_key(*last) == es_day_of_key(key))
		{
			*last |= key;
			return;
		}
	}
	score_state_reserve(st, aggcontext, 1); /* (may compact: the last key may change) */
	if (st->ndays > 0 && es_day_of_key(st->day_keys[st->ndays - 1]) >= es_day_of_key(key))
		st->sorted = false;
	st->day_keys[st->ndays++] = key;
}

/* Adds a bounce time to the state's latest bounces (made at the first, in cxt). */
static void
score_state_add_bounce(ScoreState *st, MemoryContext cxt, int64 occurred_at)
{
	if (st->bounces == NULL)
	{
		st->bounces = MemoryContextAlloc(cxt, sizeof(es_bounces));
		es_bounces_init(st->bounces);
	}
	es_bounces_add(st->bounces, occurred_at);
}

/* Adds b's latest bounces to a's (a's made in cxt when it has none). */
static void
score_state_add_bounces(ScoreState *a, MemoryContext cxt, const ScoreState *b)
{
	if (b->bounces == NULL)
		return;
	if (a->bounces == NULL)
	{
		a->bounces = MemoryContextAlloc(cxt, sizeof(es_bounces));
		*a->bounces = *b->bounces;
	}
	else
		es_bounces_merge(a->bounces, b->bounces);
}

/*
 * Every row and partial state of a group must have the same as_of and profile, by name and by
 * values.  profile is a row's cache entry or another state's profile.  Cache entries are
 * interned: a row of the entry the state was made from (the usual case) is checked by pointer.
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
	if (st->profile == profile)
		return;
	if (strcmp(st->profile->name, profile->name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the profile must be the same for every row of a group"),
				 errdetail("Got \"%s\" after \"%s\".", profile->name, st->profile->name)));
	if (memcmp(&st->profile->values, &profile->values, sizeof(es_profile)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the profile must be the same for every row of a group"),
				 errdetail("Profile \"%s\" came with different parameters.", profile->name)));
}

/* Adds a row's event to its group's state (made by the first row); profile is a cache entry,
 * which outlives the state (both last as long as the query). */
ScoreState *
es_score_state_add_event(ScoreState *st, MemoryContext aggcontext, int64 as_of, const NamedProfile *profile,
						 int type, int64 occurred_at, double value)
{
	int32		key;

	if (st == NULL)
		st = score_state_new(aggcontext, as_of, profile);
	else
		score_state_check_same(st, as_of, profile);
	switch (es_accumulate(&st->acc, &profile->values, type, occurred_at, value, &key))
	{
		case ES_ACC_DAY:
			score_state_add_day(st, aggcontext, key);
			break;
		case ES_ACC_BOUNCE:
			score_state_add_bounce(st, aggcontext, occurred_at);
			break;
	}
	return st;
}

/* A conversion value as the kernel takes it: finite, >= 0, within a double (else 22023). */
double
es_conversion_value(Numeric n)
{
	double		value;

	if (numeric_is_nan(n) || numeric_is_inf(n))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("conversion_value must be a finite number")));
	/* as numeric_float8 (the same digits, the same strtod), but beyond a double is 22023 too */
	value = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, NumericGetDatum(n)));
	if (isinf(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("conversion_value must be a finite number within the range of a double precision")));
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("conversion_value must not be negative, got %g", value)));
	return value;
}

PG_FUNCTION_INFO_V1(es_score_events_transfn);
Datum
es_score_events_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = es_aggcontext(fcinfo, "score_events or explain_events");
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
	/* (the type first: an installation not yet updated is told so, whatever its profile) */
	type = es_event_type_of(fcinfo, PG_GETARG_OID(1));
	profile = es_row_profile(fcinfo, 5);

	if (type == ES_CONVERTED && !PG_ARGISNULL(3))
		value = es_conversion_value(PG_GETARG_NUMERIC(3));
	PG_RETURN_POINTER(es_score_state_add_event(st, aggcontext, as_of, profile, type, occurred_at, value));
}

PG_FUNCTION_INFO_V1(es_score_events_combinefn);
Datum
es_score_events_combinefn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = es_aggcontext(fcinfo, "score_events, explain_events or btyd_summary");
	ScoreState *a = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	ScoreState *b = PG_ARGISNULL(1) ? NULL : (ScoreState *) PG_GETARG_POINTER(1);

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();	/* SQL NULL, never a NULL pointer a strict function could get */
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
	{
		/* Copy b into the aggregate context: it may live elsewhere (its profile, a cache entry of
		 * this query, is shared). */
		a = score_state_new(aggcontext, b->acc.as_of, b->profile);
		a->acc = b->acc;
		score_state_add_days(a, aggcontext, b);
		a->compacted = b->compacted;
		score_state_add_bounces(a, aggcontext, b);
		PG_RETURN_POINTER(a);
	}
	score_state_check_same(a, b->acc.as_of, b->profile);
	es_merge(&a->acc, &b->acc);
	score_state_add_days(a, aggcontext, b);
	score_state_add_bounces(a, aggcontext, b);
	PG_RETURN_POINTER(a);
}

/*
 * Serialized form: a format byte, the accumulator and the profile's values as they are in memory,
 * the profile's name (a length byte and its bytes), the day-key count and the keys, the count of
 * latest bounce times (0 without bounces) and the times.  A serialized
 * state only passes between the processes of one query on one server (parallel workers and their
 * leader), so native byte order and layout are safe, and a few memcpy()s keep the leader's
 * deserialization of hundreds of thousands of partial states cheap.  The deserialize function
 * rejects any other format.
 */
#define SCORE_STATE_FORMAT 5
#define SCORE_STATE_HEADER (1 + sizeof(es_accum) + sizeof(es_profile) + 1)
/* the size after the header, with namelen bytes of name, ndays day keys and nbounces bounces */
#define SCORE_STATE_REST(namelen, ndays, nbounces) \
	((namelen) + sizeof(int32) + (size_t) (ndays) * sizeof(int32) + sizeof(int32) + (size_t) (nbounces) * sizeof(int64))

PG_FUNCTION_INFO_V1(es_score_events_serialfn);
Datum
es_score_events_serialfn(PG_FUNCTION_ARGS)
{
	ScoreState *st = (ScoreState *) PG_GETARG_POINTER(0);
	size_t		namelen = strlen(st->profile->name);
	size_t		size;
	bytea	   *out;
	char	   *p;
	int32		ndays;
	int32		nbounces;

	(void) es_aggcontext(fcinfo, "score_events, explain_events or btyd_summary");
	es_score_state_compact(st);
	ndays = st->ndays;
	nbounces = st->bounces != NULL ? (int32) st->bounces->n : 0;

	size = VARHDRSZ + SCORE_STATE_HEADER + SCORE_STATE_REST(namelen, ndays, nbounces);
	out = palloc(size);
	SET_VARSIZE(out, size);
	p = VARDATA(out);
	*p++ = SCORE_STATE_FORMAT;
	memcpy(p, &st->acc, sizeof(es_accum));
	p += sizeof(es_accum);
	memcpy(p, &st->profile->values, sizeof(es_profile));
	p += sizeof(es_profile);
	*p++ = (char) namelen;		/* < NAMEDATALEN */
	memcpy(p, st->profile->name, namelen);
	p += namelen;
	memcpy(p, &ndays, sizeof(int32));
	p += sizeof(int32);
	memcpy(p, st->day_keys, (size_t) ndays * sizeof(int32));
	p += (size_t) ndays * sizeof(int32);
	memcpy(p, &nbounces, sizeof(int32));
	p += sizeof(int32);
	if (nbounces > 0)
		memcpy(p, st->bounces->at, (size_t) nbounces * sizeof(int64));
	PG_RETURN_BYTEA_P(out);
}

PG_FUNCTION_INFO_V1(es_score_events_deserialfn);
Datum
es_score_events_deserialfn(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	const char *p = VARDATA_ANY(raw);
	size_t		len = VARSIZE_ANY_EXHDR(raw);
	es_accum	acc;
	NamedProfile profile;
	size_t		namelen;
	ScoreState *st;
	int32		n;
	int32		nbounces;
	const char *keys;

	if (len < SCORE_STATE_HEADER + SCORE_STATE_REST(0, 0, 0) || p[0] != SCORE_STATE_FORMAT)
		elog(ERROR, "unknown score_events state format");
	p++;
	memcpy(&acc, p, sizeof(es_accum));
	p += sizeof(es_accum);
	memset(&profile, 0, sizeof profile);
	memcpy(&profile.values, p, sizeof(es_profile));
	p += sizeof(es_profile);
	namelen = (unsigned char) *p++;
	if (namelen >= NAMEDATALEN || len < SCORE_STATE_HEADER + SCORE_STATE_REST(namelen, 0, 0))
		elog(ERROR, "corrupt score_events state");
	memcpy(profile.name, p, namelen);
	p += namelen;
	memcpy(&n, p, sizeof(int32));
	p += sizeof(int32);
	if (n < 0 || len < SCORE_STATE_HEADER + SCORE_STATE_REST(namelen, n, 0))
		elog(ERROR, "corrupt score_events state");
	keys = p;
	p += (size_t) n * sizeof(int32);
	memcpy(&nbounces, p, sizeof(int32));
	p += sizeof(int32);
	if (nbounces < 0 || nbounces > ES_UNDELIVERABLE_AFTER_MAX ||
		len != SCORE_STATE_HEADER + SCORE_STATE_REST(namelen, n, nbounces))
		elog(ERROR, "corrupt score_events state");

	/* In the per-input-tuple context: the combine function copies what it keeps. */
	(void) es_aggcontext(fcinfo, "score_events, explain_events or btyd_summary");
	st = score_state_new(CurrentMemoryContext, acc.as_of, es_interned_profile(fcinfo, &profile));
	st->acc = acc;
	score_state_reserve(st, CurrentMemoryContext, n);
	memcpy(st->day_keys, keys, (size_t) n * sizeof(int32));
	st->ndays = n;
	st->compacted = n;			/* the serialize function compacted them */
	if (nbounces > 0)
	{
		st->bounces = palloc(sizeof(es_bounces));
		es_bounces_init(st->bounces);
		st->bounces->n = nbounces;
		memcpy(st->bounces->at, p, (size_t) nbounces * sizeof(int64));
	}
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
	es_score_state_compact(st);
	status = es_finalize(&st->acc, st->day_keys, (size_t) st->ndays, st->bounces, &st->profile->values, result,
						 err, sizeof err);
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

/* engagement.score has 18 fields in 1.0, 19 in 1.1 to 1.3 (expected_engagements_30d), 21 in 1.4
 * and 1.5 (expected_conversion_value, expected_value_30d), and from 1.6 on those and the kernel's
 * ES_SCORE_FIELDS_SINCE_1_6: the library serves each layout until its ALTER EXTENSION ... UPDATE
 * (a layout from 1.6 on is any prefix of today's, each version having appended fields). */
#define SCORE_FIELDS_1_0 18
#define SCORE_FIELDS_1_1 19
#define SCORE_FIELDS_1_4 21
#define ES_COUNT_FIELD(member, type) +1
#define SCORE_FIELDS (SCORE_FIELDS_1_4 ES_SCORE_FIELDS_SINCE_1_6(ES_COUNT_FIELD))

/* each SQL type of ES_SCORE_FIELDS_SINCE_1_6: its OID and the Datum of an es_result member */
#define ES_OID_bool BOOLOID
#define ES_OID_float8 FLOAT8OID
#define ES_OID_int8 INT8OID
#define ES_OID_timestamptz TIMESTAMPTZOID
#define ES_DATUM_bool(v) BoolGetDatum((v) != 0)
#define ES_DATUM_float8(v) Float8GetDatum(v)
#define ES_DATUM_int8(v) Int64GetDatum(v)
#define ES_DATUM_timestamptz(v) TimestampTzGetDatum(v)
#define ES_FIELD_OID(member, type) ES_OID_##type,

/* The type of each field, as es_score_events_finalfn fills it. */
static const Oid score_field_types[SCORE_FIELDS] = {
	TIMESTAMPTZOID, TEXTOID,		/* as_of, profile */
	FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,	/* composite, the components */
	FLOAT8OID, FLOAT8OID, FLOAT8OID,	/* engagement_probability, conversion_probability, churn_risk */
	TEXTOID, BOOLOID, INT8OID, INT8OID, NUMERICOID, /* segment .. conversion_total */
	TIMESTAMPTZOID, TIMESTAMPTZOID, /* first_event_at, last_engaged_at */
	FLOAT8OID, FLOAT8OID, FLOAT8OID,	/* expected_engagements_30d .. expected_value_30d */
	ES_SCORE_FIELDS_SINCE_1_6(ES_FIELD_OID)
};

/* The result type's descriptor, checked: a layout the library fills, field by field. */
static TupleDesc
score_result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc;
	MemoryContext old;
	int			natts;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "score_events must return a composite type");
	natts = desc->natts;
	/* reachable by altering the type (ALTER TYPE engagement.score ADD ATTRIBUTE, ...) */
	if (natts != SCORE_FIELDS_1_0 && natts != SCORE_FIELDS_1_1 && !(natts >= SCORE_FIELDS_1_4 && natts <= SCORE_FIELDS))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s has %d attributes, expected %d", format_type_be(desc->tdtypeid), natts, SCORE_FIELDS),
				 errhint("The type was altered after the extension made it.")));
	for (i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != score_field_types[i])
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("attribute %d of %s is not of type %s", i + 1, format_type_be(desc->tdtypeid),
							format_type_be(score_field_types[i])),
					 errhint("The type was altered after the extension made it.")));
	}
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	desc = BlessTupleDesc(CreateTupleDescCopy(desc));
	MemoryContextSwitchTo(old);
	return desc;
}

PG_FUNCTION_INFO_V1(es_score_events_finalfn);
Datum
es_score_events_finalfn(PG_FUNCTION_ARGS)
{
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	TupleDesc	result_desc = (TupleDesc) fcinfo->flinfo->fn_extra;
	es_result	r;
	Datum		values[SCORE_FIELDS];
	bool		nulls[SCORE_FIELDS] = {false};

	(void) es_aggcontext(fcinfo, "score_events");
	if (!score_state_finalize(st, &r))
		PG_RETURN_NULL();

	if (result_desc == NULL)
	{
		result_desc = score_result_desc(fcinfo);
		fcinfo->flinfo->fn_extra = result_desc;	/* kept for the query */
	}
	values[0] = TimestampTzGetDatum(st->acc.as_of);
	values[1] = CStringGetTextDatum(st->profile->name);
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
	values[18] = Float8GetDatum(r.expected_engagements_horizon);
	values[19] = Float8GetDatum(r.expected_conversion_value);
	values[20] = Float8GetDatum(r.expected_value_horizon);
	{
		/* (all of them: a layout of an earlier version forms its first natts) */
		Datum	   *since_1_6 = values + SCORE_FIELDS_1_4;

#define ES_FIELD_DATUM(member, type) *since_1_6++ = ES_DATUM_##type(r.member);
		ES_SCORE_FIELDS_SINCE_1_6(ES_FIELD_DATUM)
#undef ES_FIELD_DATUM
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

	(void) es_aggcontext(fcinfo, "explain_events");
	if (!score_state_finalize(st, &r))
		PG_RETURN_NULL();

	status = es_explain(&r, &st->profile->values, &text_c, err, sizeof err);
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
