/* config_yaml.c: the YAML document as the loader reads it: a key's node, a scalar's text, an error at FILE:LINE:COL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "server/deployd.h"

/* An error at node n, as FILE:LINE:COL: message; NULL n: FILE: message. */
void
config_yaml_err(struct config_loader *l, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[768], *line;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n != NULL)
		line = util_xasprintf("%s:%zu:%zu: %s", l->file, n->start_mark.line + 1,
		    n->start_mark.column + 1, msg);
	else
		line = util_xasprintf("%s: %s", l->file, msg);
	util_strv_push(l->errors, line);
	free(line);
}

/* A scalar's text; NULL for a list or a mapping. */
const char *
config_yaml_scalar(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

yaml_node_t *
config_yaml_find(struct config_loader *l, yaml_node_t *map, const char *name, int want_value)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(l->doc, p->key);
		const char *s = kn != NULL ? config_yaml_scalar(kn) : NULL;

		if (s != NULL && strcmp(s, name) == 0)
			return want_value ? yaml_document_get_node(l->doc, p->value) : kn;
	}
	return NULL;
}
