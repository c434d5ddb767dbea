/*
 * time_decay.c: time_decay(weight, occurred_at, as_of, half_life_days), the sum of
 * weight * 2^(-age / half_life) up to as_of.  State engagement.decay_state, text form
 * (sum, compensation, as_of in microseconds since 2000-01-01, half_life_days, rows).
 */
#include "postgres.h"

#include <math.h>

#include "es_glue.h"

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

	(void) es_aggcontext(fcinfo, "time_decay");	/* updates a in place */
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
	es_append_float8(&buf, st->sum.sum);
	appendStringInfoChar(&buf, ',');
	es_append_float8(&buf, st->sum.compensation);
	appendStringInfo(&buf, ",%lld,", (long long) st->as_of);
	es_append_float8(&buf, st->half_life_days);
	appendStringInfo(&buf, ",%lld)", (long long) st->rows);
	PG_RETURN_CSTRING(buf.data);
}

PG_FUNCTION_INFO_V1(es_decay_state_in);
Datum
es_decay_state_in(PG_FUNCTION_ARGS)
{
	StateParser sp = {"engagement.decay_state", PG_GETARG_CSTRING(0), PG_GETARG_CSTRING(0)};
	DecayState *st = decay_state_new();

	es_state_expect(&sp, '(');
	st->sum.sum = es_state_float8(&sp);
	es_state_expect(&sp, ',');
	st->sum.compensation = es_state_float8(&sp);
	es_state_expect(&sp, ',');
	st->as_of = es_state_int64(&sp);
	es_state_expect(&sp, ',');
	st->half_life_days = es_state_float8(&sp);
	es_state_expect(&sp, ',');
	st->rows = es_state_int64(&sp);
	es_state_expect(&sp, ')');
	es_state_end(&sp);
	if (!isfinite(st->sum.sum) || !isfinite(st->sum.compensation) || TIMESTAMP_NOT_FINITE(st->as_of) ||
		!isfinite(st->half_life_days) || st->half_life_days <= 0 || st->rows < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s: \"%s\"", sp.type, sp.input),
				 errdetail("The sums must be finite, as_of a finite timestamp, half_life_days greater than 0 and rows not negative.")));
	PG_RETURN_POINTER(st);
}
