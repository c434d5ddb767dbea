/*
 * btyd.c: the BG/NBD-family models of btyd_kernel.h in SQL: per-contact summaries
 * (btyd_summary), the fitting aggregates fit_mbgnbd / fit_bgnbd (state engagement.btyd_fit_state)
 * and the per-customer functions p_alive, expected_engagements and prob_no_engagement.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "btyd_kernel.h"
#include "es_glue.h"

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
	occurred_at = es_finite_timestamp(PG_GETARG_DATUM(2), "occurred_at");
	as_of = es_finite_timestamp(PG_GETARG_DATUM(3), "as_of");
	type = es_event_type_of(fcinfo, PG_GETARG_OID(1));
	PG_RETURN_POINTER(es_score_state_add_event(st, aggcontext, as_of, es_builtin_default_profile(), type,
											   occurred_at, 0));
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

	(void) es_aggcontext(fcinfo, "btyd_summary");
	if (st == NULL || st->acc.event_count == 0)
		PG_RETURN_NULL();
	es_score_state_compact(st);
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

/*
 * Collapses rows[0..n) (es_btyd_collapse: identical summaries become one, their weights summed);
 * the new length.  Summed weights beyond the range of a double are 22003, as the kernel reports
 * a total weight beyond it (not a row of infinite weight, which it would call invalid).
 */
static int64
fit_collapse(es_btyd_row *rows, int64 n)
{
	int64		i;

	n = (int64) es_btyd_collapse(rows, (size_t) n);
	for (i = 0; i < n; i++)
		if (!isfinite(rows[i].weight))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("the total weight of customer summary (x %g, t_x %g, t %g) is out of range of a double",
							rows[i].x, rows[i].t_x, rows[i].T)));
	return n;
}

/* Room for extra more rows: collapse when duplicates may have piled up, else a bigger copy. */
static FitState *
fit_state_reserve(FitState *st, int64 extra)
{
	if (st->nrows + extra <= FIT_STATE_CAPACITY(st))
		return st;
	if (st->nrows > 2 * st->collapsed)
	{
		st->nrows = fit_collapse(st->rows, st->nrows);
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

	(void) es_aggcontext(fcinfo, "fit_mbgnbd or fit_bgnbd");	/* updates its state in place */
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

	(void) es_aggcontext(fcinfo, "fit_mbgnbd or fit_bgnbd");	/* updates a in place */
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
	n = fit_collapse(rows, st->nrows);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < n; i++)
	{
		appendStringInfoString(&buf, i == 0 ? "(" : ",(");
		es_append_float8(&buf, rows[i].x);
		appendStringInfoChar(&buf, ',');
		es_append_float8(&buf, rows[i].t_x);
		appendStringInfoChar(&buf, ',');
		es_append_float8(&buf, rows[i].T);
		appendStringInfoChar(&buf, ',');
		es_append_float8(&buf, rows[i].weight);
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

	es_state_expect(&sp, '[');
	if (!es_state_accept(&sp, ']'))
	{
		do
		{
			if (n == capacity)
			{
				if (capacity >= FIT_STATE_MAX_ROWS)
					es_state_syntax_error(&sp, "too many rows");
				capacity = Min(capacity * 2, FIT_STATE_MAX_ROWS);
				rows = repalloc(rows, capacity * sizeof(es_btyd_row));
			}
			es_state_expect(&sp, '(');
			rows[n].x = es_state_float8(&sp);
			es_state_expect(&sp, ',');
			rows[n].t_x = es_state_float8(&sp);
			es_state_expect(&sp, ',');
			rows[n].T = es_state_float8(&sp);
			es_state_expect(&sp, ',');
			rows[n].weight = es_state_float8(&sp);
			es_state_expect(&sp, ')');
			n++;
		} while (es_state_accept(&sp, ','));
		es_state_expect(&sp, ']');
	}
	es_state_end(&sp);
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

	(void) es_aggcontext(fcinfo, model == ES_MODEL_MBGNBD ? "fit_mbgnbd" : "fit_bgnbd");
	if (st == NULL || st->nrows == 0)
		PG_RETURN_NULL();
	/* The kernel copies, validates, sorts and collapses: the fit depends only on the rows. */
	status = es_btyd_fit_model(model, st->rows, (size_t) st->nrows, 0.0, &fit, err, sizeof err);
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
