/** Routine sources: where routine code comes from before it reaches a worker. */
export { classifyAddress, isPublicAddress, type AddressClass } from '../http/address.ts';
export { SOURCE_REASONS, sourceReason, type SourceReason } from './errors.ts';
export { fetchUrlSource, type FetchedSource, type UrlSourceOptions } from './url.ts';
