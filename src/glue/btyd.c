/*
 * btyd.c: the models of btyd_kernel.h and gammagamma_kernel.h in SQL: per-contact summaries
 * (btyd_summary, model_summary), the fitting aggregates fit_mbgnbd / fit_bgnbd (state
 * engagement.btyd_fit_state) and fit_gammagamma (engagement.gammagamma_fit_state), and the
 * per-customer functions p_alive, expected_engagements, prob_no_engagement and
 * expected_conversion_value.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/expandeddatum.h"
#include "utils/memutils.h"

#include "btyd_kernel.h"
#include "gammagamma_kernel.h"
#include "es_glue.h"

/*
 * btyd_summary(event_type, occurred_at, as_of) and model_summary(event_type, occurred_at,
 * conversion_value, as_of): a contact's summaries in days as docs/model.md defines them
 * (es_summarize).  They share score_events' state, combine and (de)serialize functions; only the
 * summaries are read, so the built-in default parameters stand in for a profile.
 */
PG_FUNCTION_INFO_V1(es_btyd_summary_transfn);
Datum
es_btyd_summary_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = es_aggcontext(fcinfo, "btyd_summary or model_summary");
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);
	int			as_of_arg = PG_NARGS() - 1; /* (type, occurred_at [, conversion_value], as_of) */
	int64		occurred_at,
				as_of;
	int			type;
	double		value = 0;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(as_of_arg))
	{
		if (st == NULL)
			PG_RETURN_NULL();	/* SQL NULL, not a NULL pointer (see score_events) */
		PG_RETURN_POINTER(st);
	}
	occurred_at = es_finite_timestamp(PG_GETARG_DATUM(2), "occurred_at");
	as_of = es_finite_timestamp(PG_GETARG_DATUM(as_of_arg), "as_of");
	type = es_event_type_of(fcinfo, PG_GETARG_OID(1));
	if (as_of_arg == 4 && type == ES_CONVERTED && !PG_ARGISNULL(3))
		value = es_conversion_value(PG_GETARG_NUMERIC(3));
	PG_RETURN_POINTER(es_score_state_add_event(st, aggcontext, as_of, es_builtin_default_profile(), type,
											   occurred_at, value));
}

/* The summaries of a state, or false when it has no event. */
static bool
summary_of_state(FunctionCallInfo fcinfo, es_model_summary *s, TupleDesc *desc)
{
	ScoreState *st = PG_ARGISNULL(0) ? NULL : (ScoreState *) PG_GETARG_POINTER(0);

	(void) es_aggcontext(fcinfo, "btyd_summary or model_summary");
	if (st == NULL || st->acc.event_count == 0)
		return false;
	es_score_state_compact(st);
	*s = es_summarize(&st->acc, st->day_keys, (size_t) st->ndays);
	if (get_call_result_type(fcinfo, NULL, desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "a summary must return a composite type");
	*desc = BlessTupleDesc(*desc);
	return true;
}

PG_FUNCTION_INFO_V1(es_btyd_summary_finalfn);
Datum
es_btyd_summary_finalfn(PG_FUNCTION_ARGS)
{
	es_model_summary s;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false};

	if (!summary_of_state(fcinfo, &s, &desc))
		PG_RETURN_NULL();
	/* day counts within PostgreSQL's timestamp range fit an int32 */
	values[0] = Int32GetDatum((int32) s.x);
	values[1] = Float8GetDatum((double) s.t_x);
	values[2] = Float8GetDatum((double) s.t_c);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* engagement.model_summary: (x, t_x, t, value_days, mean_value) */
PG_FUNCTION_INFO_V1(es_model_summary_finalfn);
Datum
es_model_summary_finalfn(PG_FUNCTION_ARGS)
{
	es_model_summary s;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false};

	if (!summary_of_state(fcinfo, &s, &desc))
		PG_RETURN_NULL();
	values[0] = Int32GetDatum((int32) s.x);
	values[1] = Float8GetDatum((double) s.t_x);
	values[2] = Float8GetDatum((double) s.t_c);
	values[3] = Int32GetDatum((int32) s.value_days);
	values[4] = Float8GetDatum(s.value_days > 0 ? s.value_total / (double) s.value_days : 0.0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * Fitting states, engagement.btyd_fit_state (fit_mbgnbd, fit_bgnbd: rows (x, t_x, t, weight)) and
 * engagement.gammagamma_fit_state (fit_gammagamma: rows (x, m, weight), kept as (x, m, 0, weight)
 * in the same row struct): the customer summaries seen so far, collapsed whenever the array fills
 * up, and the penalizer of the aggregate's call.  The varlena's size covers the whole capacity,
 * so a copy keeps its room.  Text form [(x,t_x,t,weight),...] or [(x,m,weight),...], collapsed,
 * after {penalizer} when it is not 0.
 */
typedef struct FitKind
{
	const char *type_name;
	const char *aggregates;
	int			fields;			/* values of a row before its weight */
} FitKind;

static const FitKind btyd_kind = {"engagement.btyd_fit_state", "fit_mbgnbd or fit_bgnbd", 3};
static const FitKind gammagamma_kind = {"engagement.gammagamma_fit_state", "fit_gammagamma", 2};

typedef struct FitState
{
	int32		vl_len_;		/* varlena header, always 4 bytes here (see fit_state_arg) */
	int32		reserved;
	int64		nrows;
	int64		collapsed;		/* length after the last collapse */
	double		penalizer;
	es_btyd_row rows[FLEXIBLE_ARRAY_MEMBER];
} FitState;

#define FIT_STATE_SIZE(capacity) (offsetof(FitState, rows) + (capacity) * sizeof(es_btyd_row))
#define FIT_STATE_CAPACITY(st) ((int64) ((VARSIZE(st) - offsetof(FitState, rows)) / sizeof(es_btyd_row)))
#define FIT_STATE_MAX_ROWS ((int64) ((MaxAllocSize - offsetof(FitState, rows)) / sizeof(es_btyd_row)))

/* A new state in the current memory (a transition or combine function returning it has the
 * executor copy it into the aggregate context), holding a copy of rows[0..n). */
static FitState *
fit_state_new(int64 capacity, const es_btyd_row *rows, int64 n, double penalizer)
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
	st->penalizer = penalizer;
	if (n > 0)
		memcpy(st->rows, rows, n * sizeof(es_btyd_row));
	return st;
}

/*
 * The transition and combine functions keep their state expanded: in a memory context of its own
 * under the aggregate context, updated in place from row to row.  Flattened (a worker's partial
 * state on its way to the leader, a spilled hash table, the text output) it is collapsed first and
 * takes the room of its rows only, the whole capacity no more: partial states travel as compact as
 * the 1.1 internal state's serialized form, and the text form Citus splits is unchanged.
 */
typedef struct FitExpanded
{
	ExpandedObjectHeader hdr;
	const FitKind *kind;
	FitState   *st;				/* in hdr's context, with room to grow */
	bool		collapsed;		/* st's rows collapsed since the last row came */
} FitExpanded;

static Size fit_get_flat_size(ExpandedObjectHeader *eohptr);
static void fit_flatten_into(ExpandedObjectHeader *eohptr, void *result, Size allocated_size);

static const ExpandedObjectMethods fit_expanded_methods = {fit_get_flat_size, fit_flatten_into};

static FitState *
fit_state_arg(FunctionCallInfo fcinfo, int argno, const FitKind *kind)
{
	FitState   *st;

	if (PG_ARGISNULL(argno))
		return NULL;
	if (VARATT_IS_EXTERNAL_EXPANDED(DatumGetPointer(PG_GETARG_DATUM(argno))) &&
		DatumGetEOHP(PG_GETARG_DATUM(argno))->eoh_methods == &fit_expanded_methods)
		return ((FitExpanded *) DatumGetEOHP(PG_GETARG_DATUM(argno)))->st;	/* read in place */
	st = (FitState *) PG_DETOAST_DATUM(PG_GETARG_DATUM(argno));
	if (VARSIZE(st) < offsetof(FitState, rows) || st->nrows < 0 || st->nrows > FIT_STATE_CAPACITY(st))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("corrupt %s", kind->type_name)));
	return st;
}

/* Checks one row of a kind; false with the reason in err. */
static bool
fit_row_valid(const FitKind *kind, const es_btyd_row *row, char *err, size_t errlen)
{
	int			status;

	if (kind == &btyd_kind)
		status = es_btyd_validate_rows(row, 1, err, errlen);
	else
	{
		es_gg_row gg = {row->x, row->t_x, row->weight};

		status = es_gg_validate_rows(&gg, 1, err, errlen);
	}
	if (status != ES_OK)
	{
		/* The kernel names the row by index ("row 0: ..."): drop it, the caller names the row. */
		const char *why = strncmp(err, "row ", 4) == 0 && strstr(err, ": ") ? strstr(err, ": ") + 2 : err;

		memmove(err, why, strlen(why) + 1);
		return false;
	}
	return true;
}

/* Appends a row's values as the text form shows them, the weight last when with_weight. */
static void
fit_row_describe(StringInfo buf, const FitKind *kind, const es_btyd_row *row, bool with_weight)
{
	appendStringInfoChar(buf, '(');
	es_append_float8(buf, row->x);
	appendStringInfoChar(buf, ',');
	es_append_float8(buf, row->t_x);
	if (kind->fields == 3)
	{
		appendStringInfoChar(buf, ',');
		es_append_float8(buf, row->T);
	}
	if (with_weight)
	{
		appendStringInfoChar(buf, ',');
		es_append_float8(buf, row->weight);
	}
	appendStringInfoChar(buf, ')');
}

/*
 * Collapses rows[0..n) (es_btyd_collapse: identical summaries become one, their weights summed);
 * the new length.  Summed weights beyond the range of a double are 22003, as the kernel reports
 * a total weight beyond it (not a row of infinite weight, which it would call invalid).
 */
static int64
fit_collapse(const FitKind *kind, es_btyd_row *rows, int64 n)
{
	int64		i;

	n = (int64) es_btyd_collapse(rows, (size_t) n);
	for (i = 0; i < n; i++)
		if (!isfinite(rows[i].weight))
		{
			StringInfoData buf;

			initStringInfo(&buf);
			fit_row_describe(&buf, kind, &rows[i], false);
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("the total weight of customer summary %s is out of range of a double", buf.data)));
		}
	return n;
}

/* Room for extra more rows: collapse when duplicates may have piled up, else a bigger copy. */
static FitState *
fit_state_reserve(const FitKind *kind, FitState *st, int64 extra)
{
	if (st->nrows + extra <= FIT_STATE_CAPACITY(st))
		return st;
	if (st->nrows > 2 * st->collapsed)
	{
		st->nrows = fit_collapse(kind, st->rows, st->nrows);
		st->collapsed = st->nrows;
	}
	if (st->nrows + extra <= FIT_STATE_CAPACITY(st))
		return st;
	if (st->nrows + extra > FIT_STATE_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many distinct customer summaries to fit: more than " INT64_FORMAT,
						FIT_STATE_MAX_ROWS)));
	return fit_state_new(Max(FIT_STATE_CAPACITY(st) * 2, st->nrows + extra), st->rows, st->nrows, st->penalizer);
}

static void
fit_check_penalizer(double penalizer)
{
	if (!(isfinite(penalizer) && penalizer >= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("penalizer must be a finite number >= 0, not %g", penalizer)));
}

static void
fit_check_same_penalizer(const FitKind *kind, double a, double b)
{
	if (a != b)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: penalizer must be the same for every row (%g and %g)", kind->aggregates, a, b)));
}

static Size
fit_get_flat_size(ExpandedObjectHeader *eohptr)
{
	FitExpanded *ex = (FitExpanded *) eohptr;

	if (!ex->collapsed)
	{
		/* the same rows, collapsed (the logical value does not change) */
		ex->st->nrows = fit_collapse(ex->kind, ex->st->rows, ex->st->nrows);
		ex->st->collapsed = ex->st->nrows;
		ex->collapsed = true;
	}
	return FIT_STATE_SIZE(ex->st->nrows);
}

static void
fit_flatten_into(ExpandedObjectHeader *eohptr, void *result, Size allocated_size)
{
	FitExpanded *ex = (FitExpanded *) eohptr;

	Assert(ex->collapsed && allocated_size == FIT_STATE_SIZE(ex->st->nrows));
	memcpy(result, ex->st, allocated_size);
	SET_VARSIZE(result, allocated_size);
}

/*
 * The state a transition or combine function updates: its first argument when that is this
 * aggregate's own expanded state, else a new one in the aggregate context holding a copy of from
 * (a flat state, e.g. reloaded from a spilled hash table), or empty with this penalizer.
 */
static FitExpanded *
fit_expanded_to_update(FunctionCallInfo fcinfo, MemoryContext aggcontext, const FitKind *kind,
					   const FitState *from, double penalizer)
{
	MemoryContext objcxt;
	MemoryContext old;
	FitExpanded *ex;

	if (!PG_ARGISNULL(0) && VARATT_IS_EXTERNAL_EXPANDED_RW(DatumGetPointer(PG_GETARG_DATUM(0))))
	{
		ExpandedObjectHeader *eoh = DatumGetEOHP(PG_GETARG_DATUM(0));

		if (eoh->eoh_methods == &fit_expanded_methods && MemoryContextGetParent(eoh->eoh_context) == aggcontext)
			return (FitExpanded *) eoh;
	}
	objcxt = AllocSetContextCreate(aggcontext, "fit state", ALLOCSET_SMALL_SIZES);
	ex = MemoryContextAlloc(objcxt, sizeof(FitExpanded));
	EOH_init_header(&ex->hdr, &fit_expanded_methods, objcxt);
	ex->kind = kind;
	old = MemoryContextSwitchTo(objcxt);
	ex->st = from != NULL ? fit_state_new(from->nrows, from->rows, from->nrows, from->penalizer)
		: fit_state_new(64, NULL, 0, penalizer);
	MemoryContextSwitchTo(old);
	ex->collapsed = false;
	return ex;
}

/* Room for extra more rows in an expanded state (fit_state_reserve, in the state's context). */
static void
fit_expanded_reserve(FitExpanded *ex, int64 extra)
{
	MemoryContext old = MemoryContextSwitchTo(ex->hdr.eoh_context);
	FitState   *st = fit_state_reserve(ex->kind, ex->st, extra);

	MemoryContextSwitchTo(old);
	if (st != ex->st)
	{
		pfree(ex->st);
		ex->st = st;
	}
	ex->collapsed = false;
}

/*
 * Transition of fit_mbgnbd / fit_bgnbd (x integer, t_x float8, t float8 [, weight [, penalizer]])
 * and of fit_gammagamma (x integer, m float8 [, weight [, penalizer]]).  Rows with a NULL are
 * skipped; so are Gamma-Gamma rows with x = 0 (no valued conversion day: the model is over x >= 1).
 */
static Datum
fit_transition(FunctionCallInfo fcinfo, const FitKind *kind)
{
	FitState   *st = fit_state_arg(fcinfo, 0, kind);
	int			weight_arg = 1 + kind->fields;	/* after the row's fields */
	bool		has_weight = PG_NARGS() > weight_arg;
	bool		has_penalizer = PG_NARGS() > weight_arg + 1;
	double		penalizer = 0;
	es_btyd_row row = {0, 0, 0, 1.0};
	char		err[ES_ERRLEN];
	int			i;

	MemoryContext aggcontext = es_aggcontext(fcinfo, kind->aggregates);	/* updates its state in place */
	FitExpanded *ex;

	for (i = 1; i < PG_NARGS(); i++)
		if (PG_ARGISNULL(i))
		{
			if (st == NULL)
				PG_RETURN_NULL();	/* SQL NULL, not a NULL pointer (see score_events) */
			PG_RETURN_DATUM(PG_GETARG_DATUM(0));
		}
	row.x = (double) PG_GETARG_INT32(1);
	row.t_x = PG_GETARG_FLOAT8(2);
	if (kind->fields == 3)
		row.T = PG_GETARG_FLOAT8(3);
	if (has_weight)
		row.weight = PG_GETARG_FLOAT8(weight_arg);
	if (has_penalizer)
	{
		penalizer = PG_GETARG_FLOAT8(weight_arg + 1);
		fit_check_penalizer(penalizer);
	}
	if (st != NULL)
		fit_check_same_penalizer(kind, st->penalizer, penalizer);
	if (kind == &gammagamma_kind && row.x == 0 && isfinite(row.t_x) && row.t_x >= 0)
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	if (!fit_row_valid(kind, &row, err, sizeof err))
	{
		StringInfoData buf;

		initStringInfo(&buf);
		fit_row_describe(&buf, kind, &row, true);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary %s: %s", buf.data, err)));
	}
	ex = fit_expanded_to_update(fcinfo, aggcontext, kind, st, penalizer);
	fit_expanded_reserve(ex, 1);
	ex->st->rows[ex->st->nrows++] = row;
	PG_RETURN_DATUM(EOHPGetRWDatum(&ex->hdr));
}

PG_FUNCTION_INFO_V1(es_btyd_fit_transfn);
Datum
es_btyd_fit_transfn(PG_FUNCTION_ARGS)
{
	return fit_transition(fcinfo, &btyd_kind);
}

PG_FUNCTION_INFO_V1(es_gammagamma_fit_transfn);
Datum
es_gammagamma_fit_transfn(PG_FUNCTION_ARGS)
{
	return fit_transition(fcinfo, &gammagamma_kind);
}

static Datum
fit_combine(FunctionCallInfo fcinfo, const FitKind *kind)
{
	FitState   *a = fit_state_arg(fcinfo, 0, kind);
	FitState   *b = fit_state_arg(fcinfo, 1, kind);	/* read only: it may be another node's */
	MemoryContext aggcontext = es_aggcontext(fcinfo, kind->aggregates);	/* updates a in place */
	FitExpanded *ex;

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	if (a == NULL)
		ex = fit_expanded_to_update(fcinfo, aggcontext, kind, b, b->penalizer);
	else
	{
		fit_check_same_penalizer(kind, a->penalizer, b->penalizer);
		ex = fit_expanded_to_update(fcinfo, aggcontext, kind, a, a->penalizer);
		fit_expanded_reserve(ex, b->nrows);
		memcpy(ex->st->rows + ex->st->nrows, b->rows, b->nrows * sizeof(es_btyd_row));
		ex->st->nrows += b->nrows;
	}
	PG_RETURN_DATUM(EOHPGetRWDatum(&ex->hdr));
}

PG_FUNCTION_INFO_V1(es_btyd_fit_combinefn);
Datum
es_btyd_fit_combinefn(PG_FUNCTION_ARGS)
{
	return fit_combine(fcinfo, &btyd_kind);
}

PG_FUNCTION_INFO_V1(es_gammagamma_fit_combinefn);
Datum
es_gammagamma_fit_combinefn(PG_FUNCTION_ARGS)
{
	return fit_combine(fcinfo, &gammagamma_kind);
}

static Datum
fit_state_out(FunctionCallInfo fcinfo, const FitKind *kind)
{
	FitState   *st = fit_state_arg(fcinfo, 0, kind);
	es_btyd_row *rows = palloc(Max(st->nrows, 1) * sizeof(es_btyd_row));
	int64		n;
	int64		i;
	StringInfoData buf;

	/* Collapsed, on a copy (the argument may be read-only): equal states print the same. */
	memcpy(rows, st->rows, st->nrows * sizeof(es_btyd_row));
	n = fit_collapse(kind, rows, st->nrows);
	initStringInfo(&buf);
	if (st->penalizer != 0)
	{
		appendStringInfoChar(&buf, '{');
		es_append_float8(&buf, st->penalizer);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		fit_row_describe(&buf, kind, &rows[i], true);
	}
	appendStringInfoChar(&buf, ']');
	PG_RETURN_CSTRING(buf.data);
}

PG_FUNCTION_INFO_V1(es_btyd_fit_state_out);
Datum
es_btyd_fit_state_out(PG_FUNCTION_ARGS)
{
	return fit_state_out(fcinfo, &btyd_kind);
}

PG_FUNCTION_INFO_V1(es_gammagamma_fit_state_out);
Datum
es_gammagamma_fit_state_out(PG_FUNCTION_ARGS)
{
	return fit_state_out(fcinfo, &gammagamma_kind);
}

static Datum
fit_state_in(FunctionCallInfo fcinfo, const FitKind *kind)
{
	StateParser sp = {kind->type_name, PG_GETARG_CSTRING(0), PG_GETARG_CSTRING(0)};
	int64		capacity = 64;
	int64		n = 0;
	es_btyd_row *rows = palloc(capacity * sizeof(es_btyd_row));
	double		penalizer = 0;
	char		err[ES_ERRLEN];
	FitState   *st;

	if (es_state_accept(&sp, '{'))
	{
		penalizer = es_state_float8(&sp);
		es_state_expect(&sp, '}');
		if (!(isfinite(penalizer) && penalizer >= 0))
			es_state_syntax_error(&sp, "the penalizer must be a finite number >= 0");
	}
	es_state_expect(&sp, '[');
	if (!es_state_accept(&sp, ']'))
	{
		do
		{
			es_btyd_row *row;

			if (n == capacity)
			{
				if (capacity >= FIT_STATE_MAX_ROWS)
					es_state_syntax_error(&sp, "too many rows");
				capacity = Min(capacity * 2, FIT_STATE_MAX_ROWS);
				rows = repalloc(rows, capacity * sizeof(es_btyd_row));
			}
			row = &rows[n];
			es_state_expect(&sp, '(');
			row->x = es_state_float8(&sp);
			es_state_expect(&sp, ',');
			row->t_x = es_state_float8(&sp);
			es_state_expect(&sp, ',');
			row->T = 0;
			if (kind->fields == 3)
			{
				row->T = es_state_float8(&sp);
				es_state_expect(&sp, ',');
			}
			row->weight = es_state_float8(&sp);
			es_state_expect(&sp, ')');
			if (!fit_row_valid(kind, row, err, sizeof err))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid input syntax for type %s: \"%s\"", sp.type, sp.input),
						 errdetail("row " INT64_FORMAT ": %s", n, err)));
			n++;
		} while (es_state_accept(&sp, ','));
		es_state_expect(&sp, ']');
	}
	es_state_end(&sp);
	st = fit_state_new(n, rows, n, penalizer);
	pfree(rows);
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(es_btyd_fit_state_in);
Datum
es_btyd_fit_state_in(PG_FUNCTION_ARGS)
{
	return fit_state_in(fcinfo, &btyd_kind);
}

PG_FUNCTION_INFO_V1(es_gammagamma_fit_state_in);
Datum
es_gammagamma_fit_state_in(PG_FUNCTION_ARGS)
{
	return fit_state_in(fcinfo, &gammagamma_kind);
}

/* A fit's composite result: the values, the standard errors (NULL when there are none), then why
 * the fit did not converge (NULL when it did). */
static Datum
fit_result(FunctionCallInfo fcinfo, Datum *values, bool *nulls, int nvalues, const double *se, int nse,
		   bool has_se, bool converged, const char *why)
{
	TupleDesc	desc;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "a fit must return a composite type");
	desc = BlessTupleDesc(desc);
	for (i = 0; i < nse; i++)
	{
		values[nvalues + i] = Float8GetDatum(se[i]);
		nulls[nvalues + i] = !has_se;
	}
	values[nvalues + nse] = converged ? (Datum) 0 : CStringGetTextDatum(why);
	nulls[nvalues + nse] = converged;
	/* (a type of an older version of the extension has fewer fields: heap_form_tuple takes its own) */
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

static Datum
btyd_fit_final(FunctionCallInfo fcinfo, int model)
{
	FitState   *st = fit_state_arg(fcinfo, 0, &btyd_kind);
	es_btyd_fit fit;
	char		err[ES_ERRLEN] = "";
	int			status;
	Datum		values[13];
	bool		nulls[13] = {false};
	double		se[4];

	(void) es_aggcontext(fcinfo, btyd_kind.aggregates);
	if (st == NULL || st->nrows == 0)
		PG_RETURN_NULL();
	/* The kernel copies, validates, sorts and collapses: the fit depends only on the rows. */
	status = es_btyd_fit_model(model, st->rows, (size_t) st->nrows, st->penalizer, &fit, err, sizeof err);
	if (status != ES_OK)
		es_raise(status, err);
	if (fit.converged)
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
							"where the likelihood has no global maximum", degenerate, fit.n)));
	}
	values[0] = Float8GetDatum(fit.r);
	values[1] = Float8GetDatum(fit.alpha);
	values[2] = Float8GetDatum(fit.a);
	values[3] = Float8GetDatum(fit.b);
	values[4] = Float8GetDatum(fit.log_likelihood);
	values[5] = Float8GetDatum(fit.n);
	values[6] = Int32GetDatum(fit.iterations);
	values[7] = BoolGetDatum(fit.converged != 0);
	se[0] = fit.se_r;
	se[1] = fit.se_alpha;
	se[2] = fit.se_a;
	se[3] = fit.se_b;
	PG_RETURN_DATUM(fit_result(fcinfo, values, nulls, 8, se, 4, fit.has_standard_errors != 0, fit.converged != 0, err));
}

PG_FUNCTION_INFO_V1(es_btyd_fit_mbgnbd_finalfn);
Datum
es_btyd_fit_mbgnbd_finalfn(PG_FUNCTION_ARGS)
{
	return btyd_fit_final(fcinfo, ES_MODEL_MBGNBD);
}

PG_FUNCTION_INFO_V1(es_btyd_fit_bgnbd_finalfn);
Datum
es_btyd_fit_bgnbd_finalfn(PG_FUNCTION_ARGS)
{
	return btyd_fit_final(fcinfo, ES_MODEL_BGNBD);
}

/* fit_gammagamma's result: (p, q, v, log_likelihood, n, iterations, converged, se_p, se_q, se_v, message) */
PG_FUNCTION_INFO_V1(es_gammagamma_fit_finalfn);
Datum
es_gammagamma_fit_finalfn(PG_FUNCTION_ARGS)
{
	FitState   *st = fit_state_arg(fcinfo, 0, &gammagamma_kind);
	es_gg_row  *rows;
	es_gg_fit	fit;
	char		err[ES_ERRLEN] = "";
	int			status;
	Datum		values[11];
	bool		nulls[11] = {false};
	double		se[3];
	int64		i;

	(void) es_aggcontext(fcinfo, gammagamma_kind.aggregates);
	if (st == NULL || st->nrows == 0)
		PG_RETURN_NULL();
	rows = palloc(st->nrows * sizeof(es_gg_row));
	for (i = 0; i < st->nrows; i++)
	{
		rows[i].x = st->rows[i].x;
		rows[i].m = st->rows[i].t_x;
		rows[i].weight = st->rows[i].weight;
	}
	status = es_gg_fit_model(rows, (size_t) st->nrows, st->penalizer, &fit, err, sizeof err);
	pfree(rows);
	if (status != ES_OK)
		es_raise(status, err);
	values[0] = Float8GetDatum(fit.p);
	values[1] = Float8GetDatum(fit.q);
	values[2] = Float8GetDatum(fit.v);
	values[3] = Float8GetDatum(fit.log_likelihood);
	values[4] = Float8GetDatum(fit.n);
	values[5] = Int32GetDatum(fit.iterations);
	values[6] = BoolGetDatum(fit.converged != 0);
	se[0] = fit.se_p;
	se[1] = fit.se_q;
	se[2] = fit.se_v;
	PG_RETURN_DATUM(fit_result(fcinfo, values, nulls, 7, se, 3, fit.has_standard_errors != 0, fit.converged != 0, err));
}

/* expected_conversion_value(x, m, p, q, v) */
PG_FUNCTION_INFO_V1(es_expected_conversion_value);
Datum
es_expected_conversion_value(PG_FUNCTION_ARGS)
{
	double		out;
	char		err[ES_ERRLEN];
	int			status = es_gg_expected_value(PG_GETARG_FLOAT8(0), PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2),
											  PG_GETARG_FLOAT8(3), PG_GETARG_FLOAT8(4), &out, err, sizeof err);

	if (status != ES_OK)
		es_raise(status, err);
	PG_RETURN_FLOAT8(out);
}

/* model_version(): the version of docs/model.md this library computes */
PG_FUNCTION_INFO_V1(es_model_version);
Datum
es_model_version(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	PG_RETURN_INT32(ES_MODEL_VERSION);
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
