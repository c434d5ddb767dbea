/*
 * replaced.c: entry points of 1.0 and 1.1 that 1.2 replaced (time_decay and the fits had
 * internal states).  Their install scripts still create them, and an installation not yet
 * updated still calls them: they say what to do instead of misreading a state of the other
 * layout.
 */
#include "postgres.h"

#include "fmgr.h"

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
