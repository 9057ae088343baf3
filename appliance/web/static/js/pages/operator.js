// The operator's page. A shell for now: the live rooms from the operator API fill #operator-rooms.
import { boot } from "../ui.js";

await boot({ title: "operator.title", signedIn: true });
