/*
 * common.c: the module magic and the helpers every file of the glue uses (es_glue.h).
 */
#include "postgres.h"

#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "es_glue.h"

PG_MODULE_MAGIC;

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

/* Raises a kernel's failure: status and the message it wrote. */
void
es_raise(int status, const char *message)
{
	ereport(ERROR, (errcode(es_sqlstate(status)), errmsg("%s", message)));
	pg_unreachable();
}

/*
 * The aggregate context of a support function of aggregate (its name, for the hint).  Called
 * directly, outside an aggregate, such a function has no context to keep or update its state
 * in: 0A000.
 */
MemoryContext
es_aggcontext(FunctionCallInfo fcinfo, const char *aggregate)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
	{
		char	   *fname = fcinfo->flinfo != NULL ? get_func_name(fcinfo->flinfo->fn_oid) : NULL;

		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s is an aggregate support function: it cannot be called directly",
						fname != NULL ? fname : "this function"),
				 errhint("Use the aggregate %s.", aggregate)));
	}
	return aggcontext;
}

TimestampTz
es_finite_timestamp(Datum d, const char *what)
{
	TimestampTz ts = DatumGetTimestampTz(d);

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite timestamp", what)));
	return ts;
}
