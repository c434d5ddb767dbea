/*
 * pg_compat.h: what differs between the PostgreSQL major versions the glue builds against (15, 16,
 * 17 and 18), in one place; the glue itself is written once.  Included by es_glue.h.
 */
#ifndef ES_PG_COMPAT_H
#define ES_PG_COMPAT_H

#include "utils/float.h"

#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"
#endif

/*
 * es_noreturn, before a declaration: a function that never returns.  18 replaced the attribute
 * pg_attribute_noreturn() after a declaration by pg_noreturn before it.
 */
#if PG_VERSION_NUM >= 180000
#define es_noreturn pg_noreturn
#else
#define es_noreturn pg_attribute_noreturn()
#endif

/*
 * float8in with a soft error: the double that num spells, *endptr_p past it (when not NULL);
 * *error set instead of an ereport when it spells none (or one beyond a double).  16 replaced
 * float8in_internal_opt_error by float8in_internal with an ErrorSaveContext.
 */
static inline double
es_float8in_soft(char *num, char **endptr_p, const char *type_name, const char *orig_string, bool *error)
{
#if PG_VERSION_NUM >= 160000
	ErrorSaveContext escontext;
	double		d;

	memset(&escontext, 0, sizeof(escontext));
	escontext.type = T_ErrorSaveContext;
	d = float8in_internal(num, endptr_p, type_name, orig_string, (Node *) &escontext);

	*error = escontext.error_occurred;
	return d;
#else
	*error = false;
	return float8in_internal_opt_error(num, endptr_p, type_name, orig_string, error);
#endif
}

#endif							/* ES_PG_COMPAT_H */
